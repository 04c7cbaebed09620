"""The ready-made exercises: links on the bundled demo runs, each with hidden controls, a question and
what to reveal once an answer is committed. Every number in their words comes from the run's own
metrics."""
from ui.state import DEMO_RUNS, open_run


def _metrics(name):
    return open_run(DEMO_RUNS / name).run.metrics


def _forgetting():
    m = _metrics("finetune")
    confusion = m["task_confusion"][1]
    others = sorted(((n, t) for t, n in enumerate(confusion) if t != 1), reverse=True)[:2]
    return {"title": "Where did task 1 go?", "topic": "forgetting", "page": "forgetting",
            "params": {"run": "demo:finetune", "matrix": "tag", "step": "4", "task": "1",
                       "hide": "answer,cell,run",
                       "q": f"Fine-tuning learnt the digits 2 and 3 as task 1. After task 4 it gets "
                            f"{m['acc_tag'][4][1]:.1f} % of them right without the task label, "
                            f"{m['acc_tag'][1][1]:.1f} % right after task 1. Which task's classes does it "
                            "answer with instead?",
                       "reveal": f"Of task 1's {sum(confusion)} test images, {others[0][0]} got a class of "
                                 f"task {others[0][1]} and {others[1][0]} one of task {others[1][1]}; "
                                 f"{confusion[1]} stayed in task 1. Below: the images it lost, and why."}}


def _pathways():
    run = open_run(DEMO_RUNS / "rerelrp").run
    mask = run.learner.task_masks(1)[1]
    unit = int(mask.nonzero()[0, 0]) if mask.any() else 0
    name = run.layer_names[1]
    return {"title": "One unit of one subnetwork", "topic": "pathways", "page": "explore",
            "params": {"run": "demo:rerelrp", "image": "test:1:0", "subnetwork": "1",
                       "unit": f"{name}/{unit}", "hide": "image,run",
                       "q": f"This '2' goes through task 1's subnetwork. Unit {name}/{unit} is selected in "
                            "the pathway graph: which task froze it, and what part of the digit does it "
                            "respond to?",
                       "reveal": "Compare with the unit's frame colour and its heatmap below the graph."}}


def _recognition():
    return {"title": "Which task is it?", "topic": "task recognition", "page": "explore",
            "params": {"run": "demo:rerelrp", "image": "test:3:5", "hide": "answer,image,run",
                       "q": "Without the task label, ReReLRP must first recognise the task. This is a test "
                            "image of task 3 (the digits 6 and 7). Which task will the network recognise "
                            "for it, and which class will it predict?",
                       "reveal": "Below: the recognised task, each task's probability and why."}}


def _masking():
    m = _metrics("rerelrp")
    return {"title": "Switch a pathway off", "topic": "masking", "page": "masking",
            "params": {"run": "demo:rerelrp", "ablate": "0", "hide": "ablation,answer,run",
                       "q": f"Every unit task 0 froze is switched off in every task's subnetwork (task-aware "
                            f"accuracy now: {', '.join(f'{a:.1f}' for a in m['acc_taw'][-1])} %). Which "
                            "task will lose most, and why not only task 0?",
                       "reveal": "Below: each task's accuracy before and after, and which units each task "
                                 "reuses from the others (the reuse matrix)."}}


def _acc_drop():
    run = open_run(DEMO_RUNS / "rerelrp").run
    return {"title": "The acc_drop trade-off", "topic": "stability and plasticity", "page": "masking",
            "params": {"run": "demo:rerelrp", "task": "1", "acc_drop": "5", "hide": "acc_drop,answer,run",
                       "q": f"Task 1 was pruned so that its validation accuracy fell by at most "
                            f"{run.config.acc_drop:g} points. At acc_drop 5, will it keep more units or "
                            "fewer, and what does that leave for later tasks?",
                       "reveal": "Below: the pruning curve, with the level acc_drop 5 picks against what "
                                 "the task kept."}}


def ready_made():
    """The exercises, each a dict: title, topic, page, params (the link's query parameters)."""
    return [_forgetting(), _pathways(), _recognition(), _masking(), _acc_drop()]
