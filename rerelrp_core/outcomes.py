"""What every test image got at every step of a sequence, and what that says about forgetting.

After each task the evaluation keeps, per seen task and test image, the task-aware class predicted
(``taw``, within the task), the task-agnostic class (``tag``, a global output row), the task it was
recognised as (``task``: the recogniser's, or the task of the predicted row for methods without
one), and the probability each prediction gave the *true* class (``p_taw``, ``p_tag``: the
softmax of the method's scores; for ReReLRP's task-agnostic prediction the recognised probability
of the true task times ``p_taw``). 10 bytes per image and step, never the image. The accuracy
matrices are counts of these outcomes, so every cell's change can be traced to its images.
"""
import torch

from .learners import accuracy

FIELDS = {"taw": torch.int16, "tag": torch.int16, "task": torch.int16, "p_taw": torch.float16,
          "p_tag": torch.float16}


def image_outcomes(task, task_of_row, taw_scores, tag):
    """One seen task's outcomes from its task-aware ``taw_scores`` (N, classes of the task) and its
    task-agnostic prediction ``tag`` (a :meth:`~rerelrp_core.learners.base.Learner.tag_outcome` dict)."""
    labels = task.y_test.long()
    p_taw = true_probability(taw_scores, labels)
    if "task_probs" in tag:
        recognised = tag["task"]
        p_tag = torch.as_tensor(tag["task_probs"])[:, task.index].float() * p_taw
    else:
        recognised = task_of_row[tag["predicted"]]
        p_tag = true_probability(tag["scores"], labels + task.offset)
    values = {"taw": taw_scores.argmax(1), "tag": tag["predicted"], "task": recognised, "p_taw": p_taw,
              "p_tag": p_tag}
    return {name: torch.as_tensor(v).to(dtype) for (name, dtype), v in zip(FIELDS.items(), values.values())}


def true_probability(scores, labels):
    """Softmax probability of column ``labels[i]`` in row i of ``scores``."""
    return torch.softmax(scores.float(), 1).gather(1, labels[:, None])[:, 0]


def truth(task, kind):
    """The right answer of every test image of ``task`` in outcome field ``kind``: its class within
    the task (``taw``), or its output row (``tag``)."""
    return task.y_test.long() + (task.offset if kind == "tag" else 0)


def correct(outcome, task, kind):
    """Which of ``task``'s test images ``outcome`` got right, task-aware or task-agnostic."""
    return outcome[kind].long() == truth(task, kind)


def outcome_accuracy(outcome, task, kind):
    """Test accuracy (percent) of ``task`` in ``outcome``, as the accuracy matrices count it."""
    return accuracy(outcome[kind].long(), truth(task, kind))


def step_scores(tasks, outcomes, n_tasks):
    """A step's task-aware row, task-agnostic row and task confusion (rows: true task, columns:
    recognised task among ``n_tasks``), counted from its ``outcomes`` (one dict per seen task)."""
    taw = [outcome_accuracy(o, task, "taw") for task, o in zip(tasks, outcomes)]
    tag = [outcome_accuracy(o, task, "tag") for task, o in zip(tasks, outcomes)]
    confusion = [torch.bincount(o["task"].long(), minlength=n_tasks)[:len(tasks)].tolist() for o in outcomes]
    return taw, tag, confusion


def to_tensors(outcomes):
    """Per-step outcomes as flat named tensors (for a safetensors file)."""
    return {f"step{s}.task{t}.{name}": value.contiguous()
            for s, step in enumerate(outcomes) for t, seen in enumerate(step) for name, value in seen.items()}


def from_tensors(tensors, n_steps):
    """The inverse of :func:`to_tensors` for ``n_steps`` steps; None when any step is incomplete."""
    steps = []
    for s in range(n_steps):
        seen = [{name: tensors.get(f"step{s}.task{t}.{name}") for name in FIELDS} for t in range(s + 1)]
        if any(v is None or v.dtype != FIELDS[name] for o in seen for name, v in o.items()):
            return None
        steps.append(seen)
    return steps


def nbytes(outcomes):
    """Bytes the outcomes take."""
    return sum(v.numel() * v.element_size() for step in outcomes for seen in step for v in seen.values())
