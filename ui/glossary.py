"""One sentence per continual-learning term, shown as tooltips wherever the term appears."""

TERMS = {
    "TAw": "Task-aware accuracy: the task label of each test image is given, so the model only chooses "
           "among that task's classes (ReReLRP uses that task's own subnetwork).",
    "TAg": "Task-agnostic accuracy: no task label, the model chooses among every class seen so far "
           "(ReReLRP must first recognise the task) — the harder, more realistic number.",
    "forgetting": "Forgetting: for each old task, its best accuracy so far minus its accuracy now, "
                  "averaged over the old tasks (0 = nothing forgotten).",
    "BWT": "Backward transfer: the average change of an old task's accuracy from right after it was "
           "learnt to the end (negative = forgetting, positive = later tasks helped it).",
    "acc_drop": "acc_drop: how many points of validation accuracy ReReLRP lets pruning cost a task; a "
                "larger acc_drop prunes more, freezes fewer units and leaves more room for later tasks.",
    "drift": "Drift: 1 − cosine similarity between an image's heatmap now and right after its own task "
             "(0 = the explanation is unchanged).",
}


def glossary_markdown():
    """The terms as a bullet list (for an expander)."""
    return "\n".join(f"- **{name}** — {text.split(': ', 1)[1]}" for name, text in TERMS.items())
