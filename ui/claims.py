"""What the tour says in words about a run, written from the run's own metrics so that a sentence can
never contradict the figure beside it (tests check every number against the metrics of every
bundled run)."""
import numpy as np


def answers_by_task(metrics):
    """Per task, how many test images of all seen tasks got one of its classes without the task
    label after the last step (column sums of the task confusion)."""
    return np.array(metrics["task_confusion"]).sum(0)


def forgetting_words(metrics):
    """Where a method's task-agnostic answers go after its last task, task by task."""
    last = metrics["acc_tag"][-1]
    per_task = ", ".join(f"task {t} {a:.1f} %" for t, a in enumerate(last))
    answers = answers_by_task(metrics)
    top = int(answers.argmax())
    share = answers[top] / answers.sum()
    words = (f"Without the task label (left), after task {len(last) - 1} it gets {per_task} of the test "
             f"images right; {share:.0%} of all its answers name a class of task {top}")
    if metrics["config"].get("loss_scope") == "task":
        words += (", since each task was trained against its own classes only and nothing ranks one task's "
                  "outputs against another's")
    return words + "."


def protection_words(metrics):
    """What freezing did to task-aware accuracy in this run."""
    if metrics["forgetting_taw"] == 0:
        return "so task-aware forgetting is exactly 0 (this run: 0.00 points)"
    return f"so task-aware forgetting stays small (this run: {metrics['forgetting_taw']:.2f} points)"


def images_kept(metrics, pixels):
    """Old images a run keeps after its last task (stored at one byte per pixel)."""
    return round(sum(p.get("images", 0) for p in metrics["stored_parts_per_task"]) / pixels)


def memory_words(kept):
    """What each method keeps, from ``kept``: method -> images kept after its last task."""
    parts = []
    for method, label in (("replay", "**Replay**"), ("icarl", "**iCaRL**"), ("joint", "**joint** training")):
        if method in kept:
            parts.append(f"{label} keeps {kept[method]:,} old images")
    if "finetune" in kept:
        parts.append(f"**fine-tuning** keeps {kept['finetune']:,} and forgets")
    return "; ".join(parts) + ("." if parts else "")
