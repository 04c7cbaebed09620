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
        recalibrate_batchnorms(learner, x, freezer)
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
    learner.model.train()      # BatchNorms too: see the note below
    order = torch.randperm(len(x), generator=shuffle)
    # the loss is summed and checked on the device, once per epoch: reading it every step would make a
    # GPU wait for every batch
    total, finite, count, batch_size = 0.0, True, 0, learner.config.batch_size
    for idx in batches(order, batch_size, bool(learner.model.batchnorms())):
        if should_stop and should_stop():
            raise Cancelled()
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


@torch.no_grad()
def recalibrate_batchnorms(learner, x, freezer):
    """BatchNorm statistics of the epoch's final weights: the mean and variance over the task's
    training images, not a moving average that still holds the initial (0, 1) and the batches of
    earlier weights. A short task (a few steps per epoch) otherwise leaves running statistics far
    from the batch statistics it trained with, and a deep network's eval-mode activations grew
    until they overflowed (an adapted RegNet-Y-400MF on 259 digits: every logit NaN). Frozen units'
    statistics go back to what they were (the Freezer). Networks without BatchNorms are untouched."""
    model, norms = learner.model, learner.model.batchnorms()
    if not norms:
        return
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None        # a cumulative average over the pass
    model.train()
    try:
        for idx in batches(torch.arange(len(x)), learner.config.batch_size, True):
            model(x[idx].to(learner.device))
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.eval()
    if freezer:
        freezer.restore()


def batches(order, batch_size, batchnorm):
    """``order`` cut into batches of ``batch_size``. With BatchNorms a last batch of one image joins
    the one before: a BatchNorm over one value per channel (a 1x1 map in a deep network) makes its
    running variance NaN, and every later prediction with it."""
    cuts = list(range(0, len(order), batch_size))
    if batchnorm and len(cuts) > 1 and len(order) - cuts[-1] == 1:
        cuts.pop()
    return [order[start:end] for start, end in zip(cuts, cuts[1:] + [len(order)])]


# BatchNorms train in every task. With their statistics frozen after the first task (as before
# 2026-12-07), a deep network's free units were normalised by the first task's variances (near 0 for
# units it hardly used), which scaled their gradients up to 300-fold: torchvision's ResNet-18 diverged
# within four steps at lr 0.01. Earlier subnetworks still see exactly the statistics they were
# trained with: methods that protect units put frozen units' statistics back after every step
# (:class:`~rerelrp_core.masks.Freezer`).
