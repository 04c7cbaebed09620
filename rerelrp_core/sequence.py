"""Train a whole task sequence and evaluate after every task: the engine's main entry point."""
import time
from dataclasses import replace

from .augment import augmentation
from .data import make_tasks
from .errors import UserError
from .evaluation import evaluator_for
from .learners import make_learner
from .models import build_model
from .progress import Progress, Stage
from .runs import Run, architecture_record
from .seeding import deterministic


def new_run(dataset, split, config, tasks):
    """A fresh Run (untrained model and learner) for ``tasks``, cut from ``dataset`` as ``split`` says."""
    model = build_model(config.arch, dataset.input_shape, sum(t.n_classes for t in tasks), seed=config.seed,
                        weights=config.weights, input_size=config.input_size)
    learner = make_learner(model, config)
    return Run(config=config, split=split, dataset=dataset.name, class_names=list(dataset.class_names),
               input_shape=list(dataset.input_shape), tasks=[t.spec for t in tasks], learner=learner,
               architecture=architecture_record(config))


def train_sequence(dataset, split, config, progress=None, should_stop=None, on_task_end=None, run=None,
                   evaluate_on="test"):
    """Train every task of ``split`` in order (continuing ``run`` if given, e.g. a resumed
    checkpoint), evaluating all seen tasks after each one.

    evaluate_on: ``test``, or ``validation`` to score every step on the validation images instead
    (for choosing hyperparameters without ever looking at the test split).

    progress(event): live :class:`~rerelrp_core.progress.Progress` events; should_stop(): cancel when True;
    on_task_end(run): called after each finished task (e.g. to write a checkpoint).
    """
    tasks = make_tasks(dataset, split)
    if evaluate_on not in ("test", "validation"):
        raise UserError(f"evaluate_on must be 'test' or 'validation', not {evaluate_on!r}.")
    scored = tasks if evaluate_on == "test" else [replace(t, x_test=t.x_val, y_test=t.y_val) for t in tasks]
    if run is None:
        run = new_run(dataset, split, config, tasks)
    elif run.tasks != [t.spec for t in tasks]:
        raise UserError("The run to resume was made with another task split or data set.")
    learner, config = run.learner, run.config
    learner.resume(tasks[:run.tasks_done])
    learner.augmentation = augmentation(config.augment, dataset.name, dataset.input_shape)
    evaluate = evaluator_for(learner)
    with deterministic(learner.device):      # CUDA: reproducible kernels (a resume equals a whole run)
        for task in tasks[run.tasks_done:]:
            _learn_task(run, task, scored[:task.index + 1], len(tasks), evaluate, progress, should_stop,
                        keep_outcomes=evaluate_on == "test")
            if on_task_end:
                on_task_end(run)
    return run


def _learn_task(run, task, seen, n_tasks, evaluate, progress, should_stop, keep_outcomes=True):
    """Train and consolidate ``task``, then score every ``seen`` task into the run's history, and
    (``keep_outcomes``: scored on the test images) every test image's outcome."""
    learner = run.learner
    learner.train_task(task, progress, should_stop)
    learner.consolidate(task, progress)
    if run.config.keep_snapshots:
        run.snapshots.append({k: v.detach().half().cpu() for k, v in learner.model.state_dict().items()})
    started = time.perf_counter()
    taw, tag, confusion, outcomes = evaluate(learner, seen)
    if keep_outcomes and len(run.outcomes) == task.index:
        run.outcomes.append(outcomes)
    else:       # a resumed run saved before outcomes were kept: none, rather than some steps only
        run.outcomes.clear()
    run.history["acc_taw"].append(taw)
    run.history["acc_tag"].append(tag)
    run.history["task_confusion"] = confusion
    if learner.ownership is not None:
        run.history["capacity"].append(dict(zip(run.layer_names, learner.ownership.free_fraction())))
    run.history["evaluate_s"] += time.perf_counter() - started
    run.update_metrics()
    if progress:
        progress(Progress(Stage.EVALUATE, task.index + 1, n_tasks, task.index, acc_taw=taw, acc_tag=tag))

