"""Task recognition for a learner with per-task subnetworks: which task does an input belong to?

A :class:`TaskRecogniser` owns everything recognition needs and nothing else: the stored relevance
features of every finished task's samples through every subnetwork, which columns each recogniser
reads, the random-forest chain, and their saved state. It never holds the model: a learner hands it
a :class:`~rerelrp_core.subnetworks.SubnetworkPass` and gets task probabilities back.

Storage is compact: (m, t) -> relevance of task t's samples through subnetwork m, only in the unit
columns some recogniser reads: (values (n, len(columns)) float16, logits (n, classes of m) float16,
columns). Recogniser r's columns are chosen when task r ends (they depend on task r's own samples),
and task t's samples are only ever read by recognisers 0..t.
"""
import functools

import numpy as np
import torch

from .errors import UserError
from .recognition import Recogniser, chain_probabilities, feature_matrix, select_columns

NO_FEATURES = ("This run was saved before task recognition existed, so its earlier tasks have no relevance "
               "features to recognise them by; train it again from the start.")


class TaskRecogniser:
    """The recogniser chain of one run (see the module docstring).

    Parameters
    ----------
    config: a :class:`~rerelrp_core.recognition.RecognitionConfig`.
    units: the number of units of the model (all unit layers together).
    seed: seed of the forests.
    """

    def __init__(self, config, units, seed):
        self.config = config
        self.units = units
        self.seed = seed
        self.features = {}
        self.selected = {}       # r -> columns of recogniser r's input it uses (fixed once task r is done)
        self.forests = []        # recogniser m for every task but the last

    @property
    def n_tasks(self):
        return len(self.selected)

    @property
    def val_per_class(self):
        """Validation images per class whose relevance joins the reference set's."""
        return self.config.val_per_class

    def ready(self, n_tasks):
        """Whether the chain covers ``n_tasks`` finished tasks."""
        return n_tasks > 0 and self.n_tasks == n_tasks and len(self.forests) == n_tasks - 1

    # -- what a learner calls (the interface ClassGaussians shares) -----------------------------
    def learn_task(self, learner, task, x_ref=None):
        """After ``task``: its recognition samples through every subnetwork so far, then refit."""
        samples = learner.recognition_samples(task, x_ref)
        self.add_task(task.index, learner.subnetworks(samples, range(task.index + 1)))

    def predict(self, learner, x, want_input=False):
        """:meth:`recognise` of ``x`` through every subnetwork of ``learner``."""
        return self.recognise(learner.subnetworks(x, want_input=want_input), learner.tasks)

    def why(self, result, learner, row=0, n_features=8):
        """:meth:`explain` with the units named (layer name, unit) from ``learner``'s model."""
        unit_names = [(layer.name, u) for layer in learner.model.unit_layers for u in range(layer.n_units)]
        return self.explain(result, unit_names, row, n_features)

    @staticmethod
    def saved_in(tensors, n_tasks):
        """Whether a run's tensors hold relevance features (runs saved before recognition did not)."""
        return any(name.startswith("features.") for name in tensors)

    def load(self, tensors, learner, n_tasks):
        self.load_tensor_state(tensors, learner.tasks[:n_tasks])

    # -- after a task ---------------------------------------------------------------------------
    def add_task(self, t, sub):
        """Store task t's samples through every subnetwork m <= t (``sub``, a SubnetworkPass over
        tasks 0..t), choose recogniser t's columns, keep only the columns that are read, refit."""
        if self.n_tasks != t:
            raise UserError(NO_FEATURES)
        every = torch.arange(self.units)
        for m in range(t + 1):
            self.features[(m, t)] = (sub.features[m].half(), sub.logits[m].half(), every)
        self.selected[t] = self.choose_columns(t)
        for m in range(t + 1):
            self.keep_read_columns(m, t)
        self.fit()

    def choose_columns(self, r):
        """Recogniser r's input columns: top_k per subnetwork it sees, by mean relevance on task r's
        samples."""
        k = self.config.top_k * ((r + 1) if self.config.context else 1)
        return select_columns(self.recogniser_input(r, [self.stored_block(j, r) for j in range(r + 1)]), k)

    def keep_read_columns(self, m, t):
        """Drop the stored columns of (m, t) that no recogniser reads."""
        values, logits, columns = self.features[(m, t)]
        read = self.columns_read(m, t)
        where = torch.searchsorted(columns, read)
        if len(read) and (where.max() >= len(columns) or not torch.equal(columns[where], read)):
            raise UserError(f"the relevance features of task {t} through subnetwork {m} lack columns "
                            "its recognisers read")
        self.features[(m, t)] = (values[:, where].contiguous(), logits, read)

    def columns_read(self, m, t):
        """Unit columns of subnetwork m that some recogniser r in m..t reads (only those ever see
        task t's samples through m: r's training rows are tasks r, r+1, ...)."""
        read = set()
        for r in range(m, t + 1):
            if not self.config.context and r != m:
                continue
            start = self.block_start(r, m)
            read.update(int(c) - start for c in self.selected[r] if start <= c < start + self.units)
        return torch.tensor(sorted(read), dtype=torch.long)

    def classes_of(self, m):
        """Classes of task m (the width of its stored logits)."""
        return self.features[(m, m)][1].shape[1]

    def block_width(self, m):
        return self.units + (self.classes_of(m) if self.config.with_logits else 0)

    def block_start(self, r, m):
        """Where subnetwork m's block starts in recogniser r's input."""
        return sum(self.block_width(j) for j in range(m)) if self.config.context else 0

    def stored_block(self, m, t):
        """Task t's samples through subnetwork m as a full-width recogniser block; columns no
        recogniser reads are zero."""
        values, logits, columns = self.features[(m, t)]
        full = torch.zeros(len(values), self.units, dtype=values.dtype)
        full[:, columns] = values
        return feature_matrix(full, logits, self.config.with_logits)

    def fit(self):
        """(Re)train recogniser m for every m < last task: own samples vs later tasks' samples."""
        last = self.n_tasks - 1
        block = functools.cache(self.stored_block)   # block (j, t) feeds every recogniser m >= j

        def matrix(m, t):
            return self.recogniser_input(m, [block(j, t) for j in range(m + 1)])

        self.forests = [
            Recogniser(m, self.config, self.seed).fit(
                matrix(m, m), np.concatenate([matrix(m, t) for t in range(m + 1, last + 1)]),
                self.selected[m])
            for m in range(last)]

    def recogniser_input(self, m, blocks):
        """Recogniser m's input from per-subnetwork feature blocks (index = subnetwork)."""
        return np.concatenate(blocks[:m + 1], axis=1) if self.config.context else blocks[m]

    # -- at test time ---------------------------------------------------------------------------
    def recognise(self, sub, tasks):
        """Task-agnostic prediction from ``sub``, a SubnetworkPass through every task's subnetwork.

        Returns a dict: ``task_probs`` (N, T) chain probabilities, ``task`` (N,) recognised task,
        ``within`` (T, N) each subnetwork's within-task class, ``predicted`` (N,) global class,
        ``recogniser_probs`` (N, T-1), ``matrices`` (the recognisers' inputs per subnetwork) and
        ``subnetworks``: ``sub`` itself.
        """
        blocks = [feature_matrix(vectors, logits, self.config.with_logits)
                  for vectors, logits in zip(sub.features, sub.logits)]
        matrices = [self.recogniser_input(m, blocks) for m in range(len(blocks))]
        n = len(sub.features[0])
        p = (np.stack([r.probability(matrices[m]) for m, r in enumerate(self.forests)], axis=1)
             if self.forests else np.zeros((n, 0)))
        probs = chain_probabilities(p, self.config.chain)
        task = torch.from_numpy(probs.argmax(1))
        within = torch.stack(sub.predictions)
        offsets = torch.tensor([spec.offset for spec in tasks])
        predicted = offsets[task] + within.gather(0, task.unsqueeze(0)).squeeze(0)
        return {"task_probs": probs, "task": task, "within": within, "predicted": predicted,
                "recogniser_probs": p, "matrices": matrices, "subnetworks": sub}

    def input_names(self, m, unit_names):
        """(subnetwork, layer name, unit) of every column of recogniser m's input; logit columns
        are named (subnetwork, "logit", class). ``unit_names``: (layer name, unit) of every unit."""
        def block(j):
            logits = [(j, "logit", c) for c in range(self.classes_of(j))] if self.config.with_logits else []
            return [(j, layer, u) for layer, u in unit_names] + logits
        return [name for j in (range(m + 1) if self.config.context else [m]) for name in block(j)]

    def explain(self, result, unit_names, row=0, n_features=8):
        """Why input ``row`` of a :meth:`recognise` result got its task: every recogniser's
        probability and the features that weigh most in it, named (layer, unit), with this
        input's relevance there."""
        recognisers = []
        for m, forest in enumerate(self.forests):
            names = self.input_names(m, unit_names)
            top = [{"subnetwork": names[c][0], "layer": names[c][1], "unit": names[c][2], "importance": imp,
                    "relevance": value}
                   for c, imp, value in forest.top_features(result["matrices"][m][row], n_features)]
            recognisers.append({"task": m, "probability": float(result["recogniser_probs"][row, m]),
                                "features": top})
        return recognisers

    # -- what is kept ---------------------------------------------------------------------------
    def stored_parts(self, k):
        """Bytes task k keeps for recognition: the relevance values (float16) recognisers read and
        the logits of task k's samples through every subnetwork, and column indices."""
        entries = [entry for (m, t), entry in self.features.items() if t == k]
        indices = [columns for _, _, columns in entries] + (
            [torch.as_tensor(self.selected[k])] if k in self.selected else [])
        return {"relevance values": _bytes(values for values, _, _ in entries),
                "logits": _bytes(logits for _, logits, _ in entries), "column indices": _bytes(indices)}

    def tensor_state(self):
        tensors = {}
        for (m, t), (values, logits, columns) in self.features.items():
            tensors[f"features.m{m}.t{t}"] = values
            tensors[f"logits.m{m}.t{t}"] = logits
            tensors[f"columns.m{m}.t{t}"] = columns
        for r, columns in self.selected.items():
            tensors[f"selected.r{r}"] = torch.from_numpy(columns)
        return tensors

    def load_tensor_state(self, tensors, tasks):
        """Features and columns of the finished ``tasks`` (TaskSpecs), checked; then the forests are
        retrained from them (deterministic: fixed seeds), which is as fast as reading saved forests
        and deserialises no model object."""
        n_tasks = len(tasks)
        for m in range(n_tasks):
            for t in range(m, n_tasks):
                self.features[(m, t)] = checked_entry(tensors, m, t, tasks[m].n_classes, self.units)
        for t in range(n_tasks):     # one row per sample of task t, through every subnetwork
            if len({len(self.features[(m, t)][0]) for m in range(t + 1)}) > 1:
                raise UserError(f"the relevance features of task {t} hold a different number of samples "
                                "in different subnetworks")
        for r in range(n_tasks):
            width = self.block_start(r, r) + self.block_width(r)
            self.selected[r] = checked_selection(tensors.get(f"selected.r{r}"), r, width)
        for m, t in self.features:
            self.keep_read_columns(m, t)
        self.fit()


def checked_entry(tensors, m, t, classes, units):
    """The stored (values, logits, columns) of task t's samples through subnetwork m, checked."""
    values, logits = tensors.get(f"features.m{m}.t{t}"), tensors.get(f"logits.m{m}.t{t}")
    columns = tensors.get(f"columns.m{m}.t{t}")
    if (values is None or logits is None or columns is None or values.dim() != 2 or columns.dim() != 1
            or values.shape[1] != len(columns) or logits.shape != (len(values), classes)
            or (len(columns) and (columns.min() < 0 or columns.max() >= units))
            or (columns[1:] <= columns[:-1]).any()):
        raise UserError(f"the relevance features of task {t} through subnetwork {m} are missing or "
                        "have the wrong shape")
    return values, logits, columns.long()


def checked_selection(selected, r, width):
    """Recogniser r's stored input columns, checked against its input ``width``."""
    if (selected is None or selected.dim() != 1 or selected.dtype != torch.int64 or len(selected) == 0
            or selected.min() < 0 or selected.max() >= width or (selected[1:] <= selected[:-1]).any()):
        raise UserError(f"the recogniser columns of task {r} are missing or out of range")
    return selected.long().numpy()


def _bytes(tensors):
    return sum(a.numel() * a.element_size() for a in tensors)
