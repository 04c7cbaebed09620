"""ReReLRP: after each task LRP finds the units the task relies on, the rest is pruned from its
subnetwork, the kept units are frozen for good, and the relevance pattern an input produces in every
subnetwork tells which task it belongs to (arXiv 2502.10789; see docs/ENGINE.md)."""
import copy
import functools
import time
from dataclasses import fields

import numpy as np
import torch

from .errors import UserError
from .learner import Learner
from .masks import Freezer, UnitOwnership
from .pruning import search_pruning
from .recognition import RecognitionConfig, Recogniser, chain_probabilities, feature_matrix, select_columns
from .relevance import unit_relevance


class ReReLRP(Learner):
    """LRP-guided pruning and freezing: after each task its critical units are found by relevance,
    the rest is pruned from its subnetwork, and the kept units are frozen for good."""
    method = "rerelrp"

    def __init__(self, model, config, device=None):
        super().__init__(model, config, device)
        self.ownership = UnitOwnership(model.layer_sizes())
        self.prune_log = []
        self.recognition = recognition_config(config.recognition)
        # (m, t) -> relevance of task t's samples through subnetwork m, only in the unit columns some
        # recogniser reads: (values (n, len(columns)) float16, logits (n, classes of m) float16, columns)
        self.features = {}
        self.selected = {}       # r -> columns of recogniser r's input it uses (fixed once task r is done)
        self.recognisers = []    # recogniser m for every task but the last

    def before_task(self, task):
        if self.config.reinit_free and self.ownership.n_tasks:
            self._reinit_free_units()

    def freezer(self, task):
        head_rows = torch.zeros(self.model.n_classes, dtype=torch.bool)
        for offset, n in self.heads[:task.index]:
            head_rows[offset:offset + n] = True
        return Freezer(self.model, self.ownership.frozen(), head_rows)

    @torch.no_grad()
    def _reinit_free_units(self):
        fresh = copy.deepcopy(self.model).to(self.device)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters") and module is not fresh:
                module.reset_parameters()
        for layer, new_layer, frozen in zip(self.model.unit_layers, fresh.unit_layers, self.ownership.frozen()):
            free = (~frozen).to(self.device)
            for param, new in zip(layer.unit_parameters(), new_layer.unit_parameters()):
                param[free] = new[free]

    def task_masks(self, k):
        return self.ownership.task_mask(k, self.device) if k < self.ownership.n_tasks else None

    def stacked_task_masks(self, tasks):
        return self.ownership.stacked_masks(tasks, 1)

    def stored_parts(self, k):
        """What the run file keeps for task k: its head rows, keep mask (one byte per unit), the
        relevance values (float16) recognisers read and the logits of task k's samples through every
        subnetwork, and column indices. The recognisers are not stored: they are retrained from
        these values when a run opens."""
        entries = [entry for (m, t), entry in self.features.items() if t == k]
        size = lambda tensors: sum(a.numel() * a.element_size() for a in tensors)
        indices = [columns for _, _, columns in entries] + ([torch.as_tensor(self.selected[k])] if k in self.selected else [])
        return {**super().stored_parts(k), "masks": sum(self.ownership.layer_sizes),
                "relevance values": size(values for values, _, _ in entries),
                "logits": size(logits for _, logits, _ in entries), "column indices": size(indices)}

    def json_state(self):
        return {"prune_log": self.prune_log}

    def load_json_state(self, state):
        self.prune_log = list(state.get("prune_log", []))

    def tensor_state(self):
        tensors = {f"mask.task{t}.layer{i}": m.to(torch.uint8)
                   for t, keep in enumerate(self.ownership.task_masks) for i, m in enumerate(keep)}
        for (m, t), (values, logits, columns) in self.features.items():
            tensors[f"features.m{m}.t{t}"] = values
            tensors[f"logits.m{m}.t{t}"] = logits
            tensors[f"columns.m{m}.t{t}"] = columns
        for r, columns in self.selected.items():
            tensors[f"selected.r{r}"] = torch.from_numpy(columns)
        return tensors

    def load_tensor_state(self, tensors, n_tasks):
        """Masks and relevance features. The recognisers are retrained from the stored features
        (deterministic: fixed seeds): as fast as reading saved forests back, a fraction of their
        size, and no model object is ever deserialised."""
        sizes = self.ownership.layer_sizes
        for t in range(n_tasks):
            keep = [tensors.get(f"mask.task{t}.layer{i}") for i in range(len(sizes))]
            if any(k is None or tuple(k.shape) != (n,) for k, n in zip(keep, sizes)):
                raise UserError(f"the masks of task {t} are missing or have the wrong size")
            self.ownership.add_task([k.bool() for k in keep])
        units = sum(sizes)
        for m in range(n_tasks):
            for t in range(m, n_tasks):
                values, logits = tensors.get(f"features.m{m}.t{t}"), tensors.get(f"logits.m{m}.t{t}")
                if values is None or logits is None:
                    return  # saved before recognition existed: task-agnostic prediction uses argmax
                # runs saved before column-only storage hold every unit's value
                columns = tensors.get(f"columns.m{m}.t{t}", torch.arange(units))
                if (values.dim() != 2 or columns.dim() != 1 or values.shape[1] != len(columns)
                        or logits.shape != (len(values), self.heads[m][1])
                        or (len(columns) and (columns.min() < 0 or columns.max() >= units))
                        or (columns[1:] <= columns[:-1]).any()):
                    raise UserError(f"the relevance features of task {t} through subnetwork {m} have the wrong shape")
                self.features[(m, t)] = (values, logits, columns.long())
        compact = any(name.startswith("columns.") for name in tensors)
        for r in range(n_tasks):
            selected = tensors.get(f"selected.r{r}")
            width = self.block_start(r, r) + units + (self.heads[r][1] if self.recognition.with_logits else 0)
            if selected is None and not compact:    # an older run: its full vectors give the same choice
                self.selected[r] = self.choose_columns(r)
            elif (selected is None or selected.dim() != 1 or selected.dtype != torch.int64 or len(selected) == 0
                  or selected.min() < 0 or selected.max() >= width or (selected[1:] <= selected[:-1]).any()):
                raise UserError(f"the recogniser columns of task {r} are missing or out of range")
            else:
                self.selected[r] = selected.long().numpy()
        for m, t in self.features:
            self.keep_read_columns(m, t)
        self.fit_recognisers()

    def reference_set(self, task):
        """Up to ``ref_per_class`` random training samples per class (seeded), with their rows."""
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + 500 + task.index)
        picks = []
        for c in range(task.n_classes):
            rows = torch.nonzero(task.y_train == c).flatten()
            picks.append(rows[torch.randperm(len(rows), generator=generator)[:self.config.ref_per_class]])
        idx = torch.cat(picks)
        return task.x_train[idx], task.y_train[idx] + task.offset

    def consolidate(self, task, progress=None):
        """Relevance on the reference set -> bisection pruning under acc_drop -> freeze kept units."""
        started = time.perf_counter()
        x_ref, rows_ref = self.reference_set(task)
        relevance = unit_relevance(self.model, x_ref, rows_ref, batch_size=self.config.relevance_batch,
                                   device=self.device)
        scores = [r.sum(0).cpu() for r in relevance]
        if progress:
            progress("relevance", 1, 2, {"task": task.index})
        reference_accuracy = self.validation_accuracy(task)
        result = search_pruning(scores, lambda keep: self.validation_accuracy(task, [k.float() for k in keep]),
                                reference_accuracy, self.config.acc_drop, self.config.max_keep_fraction)
        self.ownership.add_task(result.keep)
        self.prune_log.append({"task": task.index, "pruned": result.n_pruned,
                               "kept": int(sum(k.sum() for k in result.keep)),
                               "val_acc_before": result.reference_accuracy, "val_acc_after": result.accuracy,
                               "passes": result.passes + 1})  # +1: the unpruned reference pass
        if progress:
            progress("prune", 2, 3, {"task": task.index, **self.prune_log[-1]})
        self.store_relevance_features(task, x_ref)
        self.fit_recognisers()
        if progress:
            progress("recognisers", 3, 3, {"task": task.index})
        self.timing["consolidate"] += time.perf_counter() - started
        return result

    def recognition_indices(self, task):
        """Indices of the validation images (``val_per_class`` per class, seeded) whose relevance
        vectors join the reference set's for recognition; the rest of validation stays unseen."""
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + 700 + task.index)
        picks = []
        for c in range(task.n_classes):
            rows = torch.nonzero(task.y_val == c).flatten()
            picks.append(rows[torch.randperm(len(rows), generator=generator)[:self.recognition.val_per_class]])
        return torch.cat(picks)

    def store_relevance_features(self, task, x_ref):
        """Relevance vectors of task t's reference set plus a validation slice through every
        subnetwork m <= t. Recogniser t's columns are chosen from them now (its own samples decide),
        and only the columns some recogniser r <= t reads are kept (float16), never the images."""
        t = task.index
        if any(r not in self.selected for r in range(t)):
            raise UserError("This run was saved before task recognition existed, so its earlier tasks have no "
                            "relevance features to recognise them by; train it again from the start.")
        x = torch.cat([x_ref, task.x_val[self.recognition_indices(task)]])
        result = self.subnetworks(x, range(t + 1))
        units = torch.arange(result.features[0].shape[1])
        for m in range(t + 1):
            self.features[(m, t)] = (result.features[m].half(), result.logits[m].half(), units)
        self.selected[t] = self.choose_columns(t)
        for m in range(t + 1):
            self.keep_read_columns(m, t)

    def keep_read_columns(self, m, t):
        """Drop the stored columns of (m, t) that no recogniser reads."""
        values, logits, columns = self.features[(m, t)]
        read = self.columns_read(m, t)
        where = torch.searchsorted(columns, read)
        if len(read) and (where.max() >= len(columns) or not torch.equal(columns[where], read)):
            raise UserError(f"the relevance features of task {t} through subnetwork {m} lack columns "
                            "its recognisers read")
        self.features[(m, t)] = (values[:, where].contiguous(), logits, read)

    def choose_columns(self, r):
        """Recogniser r's input columns: top_k per subnetwork it sees, by mean relevance on task r's samples."""
        k = self.recognition.top_k * ((r + 1) if self.recognition.context else 1)
        return select_columns(self.recogniser_input(r, [self.stored_block(j, r) for j in range(r + 1)]), k)

    def columns_read(self, m, t):
        """Unit columns of subnetwork m that some recogniser r in m..t reads (only those ever see
        task t's samples through m: r's training rows are tasks r, r+1, ...)."""
        units = sum(self.ownership.layer_sizes)
        read = set()
        for r in range(m, t + 1):
            if not self.recognition.context and r != m:
                continue
            start = self.block_start(r, m)
            read.update(int(c) - start for c in self.selected[r] if start <= c < start + units)
        return torch.tensor(sorted(read), dtype=torch.long)

    def block_start(self, r, m):
        """Where subnetwork m's block starts in recogniser r's input."""
        if not self.recognition.context:
            return 0
        logits = self.recognition.with_logits
        return sum(sum(self.ownership.layer_sizes) + (self.heads[j][1] if logits else 0) for j in range(m))

    def stored_block(self, m, t):
        """Task t's samples through subnetwork m as a full-width recogniser block; columns no
        recogniser reads are zero."""
        values, logits, columns = self.features[(m, t)]
        full = torch.zeros(len(values), sum(self.ownership.layer_sizes), dtype=values.dtype)
        full[:, columns] = values
        return feature_matrix(full, logits, self.recognition.with_logits)

    def fit_recognisers(self):
        """(Re)train recogniser m for every m < last task: own samples vs later tasks' samples."""
        last = self.ownership.n_tasks - 1
        block = functools.cache(self.stored_block)   # block (j, t) feeds every recogniser m >= j

        def matrix(m, t):
            return self.recogniser_input(m, [block(j, t) for j in range(m + 1)])

        self.recognisers = [
            Recogniser(m, self.recognition, self.config.seed).fit(
                matrix(m, m), np.concatenate([matrix(m, t) for t in range(m + 1, last + 1)]), self.selected[m])
            for m in range(last)]

    def recogniser_input(self, m, blocks):
        """Recogniser m's input from per-subnetwork feature blocks (index = subnetwork)."""
        return np.concatenate(blocks[:m + 1], axis=1) if self.recognition.context else blocks[m]

    def recognise(self, x, want_input=False):
        """Task-agnostic prediction with details for a batch ``x``.

        Returns a dict: ``task_probs`` (N, T) chain probabilities, ``task`` (N,) recognised task,
        ``within`` (T, N) each subnetwork's within-task class, ``predicted`` (N,) global class,
        ``recogniser_probs`` (N, T-1), ``matrices`` (the recognisers' inputs per subnetwork) and
        ``subnetworks``: the :class:`~rerelrp_core.recognition.SubnetworkPass` it came from
        (with input heatmaps when ``want_input``).
        """
        if not self.has_recognition:
            raise UserError("This run has no task recognisers (no trained task yet, or saved before task "
                            "recognition existed); train it again to recognise tasks.")
        sub = self.subnetworks(x, want_input=want_input)
        blocks = [feature_matrix(vectors, logits, self.recognition.with_logits)
                  for vectors, logits in zip(sub.features, sub.logits)]
        matrices = [self.recogniser_input(m, blocks) for m in range(len(blocks))]
        p = (np.stack([r.probability(matrices[m]) for m, r in enumerate(self.recognisers)], axis=1)
             if self.recognisers else np.zeros((len(x), 0)))
        probs = chain_probabilities(p, self.recognition.chain)
        task = torch.from_numpy(probs.argmax(1))
        within = torch.stack(sub.predictions)
        offsets = torch.tensor([offset for offset, _ in self.heads])
        predicted = offsets[task] + within.gather(0, task.unsqueeze(0)).squeeze(0)
        return {"task_probs": probs, "task": task, "within": within, "predicted": predicted,
                "recogniser_probs": p, "matrices": matrices, "subnetworks": sub}

    def recogniser_input_names(self, m):
        """(subnetwork, layer name, unit) of every column of recogniser m's input; logit columns
        are named (subnetwork, "logit", class)."""
        def block(j):
            names = [(j, layer.name, u) for layer in self.model.unit_layers for u in range(layer.n_units)]
            return names + ([(j, "logit", c) for c in range(self.heads[j][1])] if self.recognition.with_logits else [])
        return [name for j in (range(m + 1) if self.recognition.context else [m]) for name in block(j)]

    def explain_task(self, result, row=0, n_features=8):
        """Why input ``row`` of a :meth:`recognise` result got its task: every recogniser's
        probability and the features that weigh most in it, named (layer, unit), with this
        input's relevance there."""
        recognisers = []
        for m, recogniser in enumerate(self.recognisers):
            names = self.recogniser_input_names(m)
            top = [{"subnetwork": names[c][0], "layer": names[c][1], "unit": names[c][2], "importance": imp,
                    "relevance": value}
                   for c, imp, value in recogniser.top_features(result["matrices"][m][row], n_features)]
            recognisers.append({"task": m, "probability": float(result["recogniser_probs"][row, m]),
                                "features": top})
        return recognisers

    @property
    def has_recognition(self):
        return self.ownership.n_tasks > 0 and len(self.recognisers) == self.ownership.n_tasks - 1

    def predict_tag(self, x):
        if not self.has_recognition:
            return super().predict_tag(x)     # a run without recognisers: plain argmax
        return torch.cat([self.recognise(x[i:i + 1024])["predicted"] for i in range(0, len(x), 1024)])


def recognition_config(values):
    known = {f.name for f in fields(RecognitionConfig)}
    if set(values) - known:
        raise UserError(f"Unknown recognition settings: {', '.join(sorted(set(values) - known))}.")
    return RecognitionConfig(**values)
