"""Continual-learning metrics computed from accuracy matrices and learner state.

An accuracy matrix is a list of rows: row t holds, after training task t, the test accuracy (percent)
of every task 0..t. Functions here never train or predict; they only summarise.
"""
import numpy as np


def average_accuracy(matrix):
    """Per step t, the mean accuracy over tasks 0..t."""
    return [float(np.mean(row)) for row in matrix]


def forgetting(matrix):
    """Final forgetting: for each old task, its best accuracy at any earlier step minus its final
    accuracy, averaged over all tasks but the last (0 for a single task)."""
    if len(matrix) < 2:
        return 0.0
    final = matrix[-1]
    drops = [max(matrix[t][k] for t in range(k, len(matrix) - 1)) - final[k] for k in range(len(matrix) - 1)]
    return float(np.mean(drops))


def backward_transfer(matrix):
    """Mean over old tasks of (final accuracy - accuracy right after learning the task)."""
    if len(matrix) < 2:
        return 0.0
    return float(np.mean([matrix[-1][k] - matrix[k][k] for k in range(len(matrix) - 1)]))


def summarise(matrix, suffix):
    """The metrics.json keys for one accuracy matrix (``suffix`` is ``taw`` or ``tag``)."""
    return {f"acc_{suffix}": [[round(v, 4) for v in row] for row in matrix],
            f"avg_acc_{suffix}": [round(v, 4) for v in average_accuracy(matrix)],
            f"forgetting_{suffix}": round(forgetting(matrix), 4),
            f"bwt_{suffix}": round(backward_transfer(matrix), 4)}


def capacity_report(ownership, layer_names):
    """Units each task owns (froze first) and keeps, and each layer's free fraction."""
    owner = ownership.owner()
    per_task = []
    for t, keep in enumerate(ownership.task_masks):
        per_task.append({"task": t,
                         "kept": {name: int(k.sum()) for name, k in zip(layer_names, keep)},
                         "owned": {name: int((o == t).sum()) for name, o in zip(layer_names, owner)}})
    free = {name: round(f, 4) for name, f in zip(layer_names, ownership.free_fraction())}
    return {"per_task": per_task, "free_fraction": free}
