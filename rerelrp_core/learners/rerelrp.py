"""ReReLRP: after each task LRP finds the units the task relies on, the rest is pruned from its
subnetwork, the kept units are frozen for good, and the relevance pattern an input produces in every
subnetwork tells which task it belongs to (arXiv 2502.10789; see docs/ENGINE.md).

The learner composes two parts: :class:`~rerelrp_core.masks.UnitOwnership` (which task keeps and
froze which unit) and :class:`~rerelrp_core.task_recognition.TaskRecogniser` (the recogniser chain
and the relevance features it is trained on). What is left here is the order of things after a
task: relevance, pruning, freezing, features for recognition.
"""
import copy
import logging
import time

import torch

from ..class_gaussians import ClassGaussians
from ..errors import UserError
from ..masks import Freezer, UnitOwnership
from ..metrics import capacity_report
from ..progress import Progress, Stage
from ..pruning import keep_masks, prune_order, search_pruning
from ..recognition import recognition_config
from ..relevance import unit_relevance
from ..seeding import generator, seeded
from ..task_recognition import NO_FEATURES, TaskRecogniser
from .base import Learner

log = logging.getLogger(__name__)


def per_class_draw(labels, n_classes, per_class, seed):
    """Indices of up to ``per_class`` random samples of every class (drawn with ``seed``)."""
    draw = generator(seed)
    picks = []
    for c in range(n_classes):
        rows = torch.nonzero(labels == c).flatten()
        picks.append(rows[torch.randperm(len(rows), generator=draw)[:per_class]])
    return torch.cat(picks)


def finite_scores(scores, layer, task):
    """A layer's relevance scores with non-finite values counted as 0 (least relevant), said in the
    log: a network of the user's that overflows in LRP must still give a run that opens (the run
    loader refuses non-finite rankings). Seen before BatchNorms were recalibrated after every epoch:
    an adapted RegNet-Y-400MF whose eval-mode activations overflowed."""
    bad = ~torch.isfinite(scores)
    if bad.any():
        log.warning("Task %d: %d of %d units of %s got non-finite relevance; they rank as least relevant.",
                    task, int(bad.sum()), len(scores), layer)
        scores = torch.where(bad, torch.zeros_like(scores), scores)
    return scores


def make_recogniser(recognition, model, seed):
    """The task recogniser a RecognitionConfig asks for (see :mod:`~rerelrp_core.recognition`)."""
    if recognition.kind == "gaussian":
        return ClassGaussians(recognition)
    return TaskRecogniser(recognition, sum(model.layer_sizes()), seed)


class ReReLRP(Learner):
    """LRP-guided pruning and freezing with task recognition from relevance."""
    method = "rerelrp"

    def __init__(self, model, config, device=None):
        super().__init__(model, config, device)
        self.ownership = UnitOwnership(model.layer_sizes())
        self.recogniser = make_recogniser(recognition_config(config.recognition), model, config.seed)
        self.prune_log = []
        # task index -> every unit's relevance on its reference set (all layers, float32); a run
        # resumed from before rankings were kept has them only for the tasks trained since
        self.rankings = {}
        # task index -> the validation accuracy training ended at: the model rests at that epoch's
        # weights, so the pruning search's unpruned reference pass would measure it again exactly
        self.trained_accuracy = {}

    def train_task(self, task, progress=None, should_stop=None):
        if self.recogniser is None:       # opened from a run saved before recognition existed
            raise UserError(NO_FEATURES)
        best = super().train_task(task, progress, should_stop)
        if best >= 0:                     # -1: no epoch was run, the model is not at a measured state
            self.trained_accuracy[task.index] = best
        return best

    def before_task(self, task):
        if self.config.reinit_free and self.ownership.n_tasks:
            self._reinit_free_units(task)

    def freezer(self, task):
        head_rows = torch.zeros(self.model.n_classes, dtype=torch.bool)
        for seen in self.tasks[:task.index]:
            head_rows[seen.rows] = True
        # shared parameters (no unit owns them) learn with the first task only: every later change
        # would reach the subnetworks of the tasks before
        shared = self.model.shared_parameters() + self.model.shared_statistics() if task.index > 0 else ()
        return Freezer(self.model, self.ownership.frozen(), head_rows, shared)

    @torch.no_grad()
    def _reinit_free_units(self, task):
        fresh = copy.deepcopy(self.model).to(self.device)
        with seeded(self.config.seed * 1000 + task.index):
            for module in fresh.modules():
                if hasattr(module, "reset_parameters") and module is not fresh:
                    module.reset_parameters()
        for layer, new_layer, frozen in zip(self.model.unit_layers, fresh.unit_layers,
                                            self.ownership.frozen()):
            free = (~frozen).to(self.device)
            for param, new in zip(layer.unit_parameters(), new_layer.unit_parameters()):
                param[free] = new[free]

    def unit_owners(self):
        return [owner.numpy() for owner in self.ownership.owner()]

    def task_masks(self, k):
        return self.ownership.task_mask(k, self.device) if k < self.ownership.n_tasks else None

    def stacked_task_masks(self, tasks):
        return self.ownership.stacked_masks(tasks, 1)

    def stored_parts(self, k):
        """What the run file keeps for task k: its head rows, keep mask (one byte per unit) and what
        its recognition needs. The recognisers are not stored: they are retrained from the stored
        values when a run opens."""
        parts = {**super().stored_parts(k), "masks": sum(self.ownership.layer_sizes)}
        if k in self.rankings:
            parts["relevance ranking"] = self.rankings[k].numel() * 4
        return {**parts, **self.recogniser.stored_parts(k)} if self.recogniser else parts

    def metrics(self):
        """Also the units each task keeps and owns, the free capacity, and the pruning log."""
        layer_names = [layer.name for layer in self.model.unit_layers]
        return {**super().metrics(), "units": capacity_report(self.ownership, layer_names),
                "pruning": self.prune_log}

    def json_state(self):
        return {**super().json_state(), "prune_log": self.prune_log}

    def load_json_state(self, state, tasks):
        super().load_json_state(state, tasks)
        self.prune_log = list(state.get("prune_log", []))

    def tensor_state(self):
        return {**self.ownership.tensor_state(),
                **{f"ranking.t{t}": ranking for t, ranking in self.rankings.items()},
                **(self.recogniser.tensor_state() if self.recogniser else {})}

    def load_tensor_state(self, tensors, n_tasks):
        """Masks and the recogniser's features. A run saved before recognition existed has none:
        it opens without a recogniser (task-agnostic prediction falls back to the plain argmax)."""
        self.ownership.load_tensor_state(tensors, n_tasks)
        self.rankings = self._load_rankings(tensors, n_tasks)
        if not self.recogniser.saved_in(tensors, n_tasks):
            self.recogniser = None
            return
        self.recogniser.load(tensors, self, n_tasks)

    def _load_rankings(self, tensors, n_tasks):
        """The stored relevance rankings (tasks trained before rankings were kept have none: their
        pruning curve cannot be redrawn)."""
        units = sum(self.ownership.layer_sizes)
        rankings = {t: tensors[f"ranking.t{t}"] for t in range(n_tasks) if f"ranking.t{t}" in tensors}
        for t, ranking in rankings.items():
            if tuple(ranking.shape) != (units,) or not torch.isfinite(ranking).all():
                raise UserError(f"the relevance ranking of task {t} has the wrong size or is not finite")
        return {t: ranking.float() for t, ranking in rankings.items()}

    def reference_set(self, task):
        """Up to ``ref_per_class`` random training samples per class (seeded), with their rows."""
        idx = per_class_draw(task.y_train, task.n_classes, self.config.ref_per_class,
                             self.config.seed * 1000 + 500 + task.index)
        return task.x_train[idx], task.y_train[idx] + task.offset

    def consolidate(self, task, progress=None):
        """Relevance on the reference set -> bisection pruning under acc_drop -> freeze kept units
        -> relevance features for task recognition."""
        started = time.perf_counter()
        x_ref, rows_ref = self.reference_set(task)
        relevance = unit_relevance(self.model, x_ref, rows_ref, batch_size=self.config.relevance_batch,
                                   device=self.device)
        scores = [finite_scores(r.sum(0).cpu(), layer.name, task.index)
                  for r, layer in zip(relevance, self.model.unit_layers)]
        self.rankings[task.index] = torch.cat(scores).float()
        if progress:
            progress(Progress(Stage.RELEVANCE, 1, 3, task.index))
        result = self._prune(task, scores)
        if progress:
            progress(Progress(Stage.PRUNE, 2, 3, task.index, pruned=result.n_pruned,
                              kept=self.prune_log[-1]["kept"], passes=self.prune_log[-1]["passes"]))
        self.recogniser.learn_task(self, task, x_ref)
        if progress:
            progress(Progress(Stage.RECOGNISERS, 3, 3, task.index))
        self.timing["consolidate"] += time.perf_counter() - started
        return result

    def _prune(self, task, scores):
        """The pruning search under acc_drop; the kept units become the task's mask."""
        reference_accuracy = self.trained_accuracy.pop(task.index, None)
        reference_passes = int(reference_accuracy is None)
        if reference_passes:
            reference_accuracy = self.validation_accuracy(task)

        def evaluate(keep, at_least):
            return self.validation_accuracy(task, [k.float() for k in keep], at_least)

        result = search_pruning(scores, evaluate, reference_accuracy, self.config.acc_drop,
                                self.config.max_keep_fraction, [~f for f in self.ownership.frozen()],
                                self.config.max_claim_fraction, self.config.claim_cap_tolerance)
        self.ownership.add_task(result.keep)
        self.prune_log.append({"task": task.index, "pruned": result.n_pruned,
                               "kept": int(sum(k.sum() for k in result.keep)),
                               "val_acc_before": result.reference_accuracy, "val_acc_after": result.accuracy,
                               "passes": result.passes + reference_passes,
                               "capped": result.capped})
        return result

    def pruning_curve(self, task, n_levels=48):
        """The curve the pruning search of finished ``task`` walked: for about ``n_levels`` pruning
        levels along its stored relevance ranking (and the level the search chose), the units the
        subnetwork would keep and its validation accuracy (%), measured now on ``task``'s validation
        images. Units the task kept are frozen, so levels that prune at least as much as the search
        did are exactly what it saw; levels that keep more use units later tasks have trained since.
        Returns {"kept", "accuracy", "reference", "chosen" (index of the search's level), "kept_units"
        (what the task really kept: fewer when the claim cap pruned ``capped`` more)}."""
        if task.index not in self.rankings:
            raise UserError(f"Task {task.index} of this run has no stored relevance ranking (runs saved "
                            "before rankings were kept): retrain the run to see its pruning curve.")
        sizes = self.ownership.layer_sizes
        order = prune_order(list(torch.split(self.rankings[task.index], sizes)))
        log = self.prune_log[task.index]
        searched = log["pruned"] - log.get("capped", 0)
        levels = sorted({*torch.linspace(0, len(order), n_levels).round().long().tolist(), searched})
        total = sum(sizes)
        accuracy = [self.validation_accuracy(task, [k.float() for k in keep_masks(sizes, order, k)])
                    for k in levels]
        return {"kept": [total - k for k in levels], "accuracy": accuracy, "reference": log["val_acc_before"],
                "chosen": levels.index(searched), "kept_units": log["kept"], "capped": log.get("capped", 0)}

    def recognition_indices(self, task):
        """Indices of the validation images (``val_per_class`` per class, seeded) whose relevance
        vectors join the reference set's for recognition; the rest of validation stays unseen."""
        return per_class_draw(task.y_val, task.n_classes, self.recogniser.val_per_class,
                              self.config.seed * 1000 + 700 + task.index)

    def recognition_samples(self, task, x_ref=None):
        """The images whose relevance task recognition stores for ``task``: its reference set
        (``x_ref`` when the caller has it already) and a seeded slice of its validation images (the
        images themselves are never kept)."""
        x_ref = self.reference_set(task)[0] if x_ref is None else x_ref
        return torch.cat([x_ref, task.x_val[self.recognition_indices(task)]])

    def can_recognise(self):
        return self.recogniser is not None and self.recogniser.ready(self.ownership.n_tasks)

    def recognise(self, x, want_input=False):
        """Task-agnostic prediction with details for a batch ``x``: see
        :meth:`~rerelrp_core.task_recognition.TaskRecogniser.recognise` (``subnetworks`` holds the
        input heatmaps when ``want_input``)."""
        if not self.can_recognise():
            return super().recognise(x, want_input)
        self.model.check_input(x)
        return self.recogniser.predict(self, x, want_input)

    def explain_task(self, result, row=0, n_features=8):
        """Why input ``row`` of a :meth:`recognise` result got its task: per task its class
        distance (class Gaussians) or per recogniser its weightiest units, named (layer, unit)."""
        return self.recogniser.why(result, self, row, n_features)

    def predict_tag(self, x):
        return self.tag_outcome(x)["predicted"]

    def tag_outcome(self, x):
        if not self.can_recognise():
            return super().tag_outcome(x)     # a run without recognisers: plain argmax
        parts = [self.recognise(x[i:i + 1024]) for i in range(0, len(x), 1024)]
        return {"predicted": torch.cat([p["predicted"] for p in parts]),
                "task": torch.cat([torch.as_tensor(p["task"]) for p in parts]),
                "task_probs": torch.cat([torch.as_tensor(p["task_probs"]) for p in parts])}
