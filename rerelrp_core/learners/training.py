"""SGD training of one task, the loop every learner shares: shuffled mini-batches, the learner's
own loss and freezing hooks, early stopping and learning-rate decay on the task's validation split."""
import copy

import torch

from ..errors import UserError
from ..progress import Progress, Stage
from ..seeding import generator


class Cancelled(Exception):
    """Raised inside training when the caller's ``should_stop`` returns True."""


def fit_task(learner, task, progress=None, should_stop=None):
    """Fit ``task`` with the learner's hooks (``training_data``, ``loss_columns``, ``before_task``,
    ``freezer``, ``loss``); the model ends at its best validation epoch, whose accuracy is returned."""
    config, model = learner.config, learner.model
    x, rows = learner.training_data(task)
    columns = learner.loss_columns(task)
    learner.before_task(task)
    freezer = learner.freezer(task)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    best, best_state, stale, decays = -1.0, None, 0, 0
    shuffle = generator(config.seed * 1000 + task.index)
    for epoch in range(config.epochs):
        loss = run_epoch(learner, x, rows, columns, optimizer, freezer, shuffle, task.index, should_stop)
        val = learner.validation_accuracy(task)
        if val > best:
            best, best_state, stale = val, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        if progress:
            progress(Progress(Stage.TRAIN, epoch + 1, config.epochs, task.index, loss=loss, val_acc=val))
        if stale >= config.patience:
            if decays >= config.max_decays:
                break
            decays, stale = decays + 1, 0
            for group in optimizer.param_groups:
                group["lr"] *= config.lr_decay
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()      # the resting mode: inference passes then need not switch every module
    return best


def run_epoch(learner, x, rows, columns, optimizer, freezer, shuffle, task_index, should_stop):
    """One pass over the shuffled task data; returns the mean loss."""
    set_train_mode(learner.model, task_index)
    order = torch.randperm(len(x), generator=shuffle)
    # the loss is summed and checked on the device, once per epoch: reading it every step would make a
    # GPU wait for every batch
    total, finite, count, batch_size = 0.0, True, 0, learner.config.batch_size
    for start in range(0, len(x), batch_size):
        if should_stop and should_stop():
            raise Cancelled()
        idx = order[start:start + batch_size]
        xb, yb = learner.mix_batch(x[idx].to(learner.device), rows[idx].to(learner.device))
        if learner.augmentation is not None:     # its seed comes from the shuffle: reproducible
            xb = learner.augmentation(xb, int(torch.randint(2 ** 31, (1,), generator=shuffle)))
        loss = learner.loss(xb, yb, learner.model(xb), columns)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if freezer:
            freezer.restore()
        total, count = total + loss.detach() * len(xb), count + len(xb)
        finite = finite & torch.isfinite(loss.detach())
    if not bool(finite):
        raise UserError(f"Training diverged in task {task_index} (the loss became {float(total)}); "
                        "lower the learning rate (--lr) and train again or resume.")
    return float(total) / max(count, 1)


def set_train_mode(model, task_index):
    """Training mode, except BatchNorm statistics, which stay frozen after the first task
    (later tasks must not shift the normalisation earlier subnetworks rely on)."""
    model.train()
    if task_index > 0:
        for bn in model.batchnorms():
            bn.eval()
