"""LRP relevance: finite, batch-independent, normalised per layer, conserved as the rules promise,
and identical whether subnetworks run one at a time or stacked in one batch."""
import pytest
import torch
from zennit.composites import EpsilonPlusFlat

from rerelrp_core.lrp_rules import canonizers_for, composite_for
from rerelrp_core.models import build_model
from rerelrp_core.relevance import (
    input_heatmap,
    lrp_context,
    relevance_batch,
    unit_relevance,
)


def test_relevance_finite_normalised_and_batch_independent(digits_run, digits_tasks):
    model = digits_run.model
    task = digits_tasks[0]
    x, rows = task.x_val[:40], task.y_val[:40] + task.offset
    together = unit_relevance(model, x, rows, batch_size=40)
    one_by_one = unit_relevance(model, x, rows, batch_size=1)
    for a, b in zip(together, one_by_one):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(a.abs().sum(1), torch.ones(len(x)))


def test_relevance_conserved_as_the_rules_promise(digits_run, digits_tasks):
    """LRP starts from the target logit. Epsilon (dense) passes on the logit minus the bias share;
    z+ (convolutions) passes on all but what positive biases absorb; Flat (first layer) is exactly
    conservative down to the input pixels."""
    model, learner = digits_run.model, digits_run.learner
    task = digits_tasks[1]
    x, rows = task.x_val[:24], task.y_val[:24] + task.offset
    with lrp_context(model) as modified, model.subnetwork(learner.task_masks(1)):
        units, heat, logits = relevance_batch(modified, model, x, rows, want_input=True)
    conv1, conv2, fc1 = [u.detach().sum(1) for u in units]
    explained = logits[torch.arange(len(x)), rows] - model.head.bias.detach()[rows]
    torch.testing.assert_close(fc1, explained, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(heat.sum((1, 2, 3)), conv1, rtol=1e-3, atol=1e-5)
    ratio = conv1 / conv2
    assert ((ratio > 0.5) & (ratio < 1.0 + 1e-4)).all(), ratio
    assert torch.isfinite(heat).all()


def test_stacked_subnetworks_match_single(digits_run, digits_tasks):
    model, ownership = digits_run.model, digits_run.learner.ownership
    task = digits_tasks[2]
    x, rows = task.x_val[:16], task.y_val[:16] + task.offset
    stacked = unit_relevance(model, x.repeat(3, 1, 1, 1), rows.repeat(3),
                             masks=ownership.stacked_masks([0, 1, 2], len(x)))
    for t in range(3):
        alone = unit_relevance(model, x, rows, masks=ownership.task_mask(t))
        for s, a in zip(stacked, alone):
            torch.testing.assert_close(s[t * len(x):(t + 1) * len(x)], a, rtol=1e-4, atol=1e-6)
        # pruned units of a subnetwork carry no relevance
        for r, keep in zip(alone, ownership.task_masks[t]):
            assert (r[:, ~keep] == 0).all()


def test_input_heatmap_shape(digits_run, digits_tasks):
    task = digits_tasks[0]
    heat = input_heatmap(digits_run.model, task.x_test[:3], task.y_test[:3] + task.offset)
    assert heat.shape == task.x_test[:3].shape and torch.isfinite(heat).all()


ARCH_INPUTS = {"cnn": (1, 28, 28), "cnn-small": (1, 28, 28), "vgg11": (3, 32, 32), "resnet18": (3, 32, 32)}


@pytest.mark.parametrize("arch", list(ARCH_INPUTS))
def test_every_convolution_after_the_first_reads_a_non_negative_input(arch):
    """What NonNegativeZPlus relies on, for plain and LRP passes, in training and in eval mode."""
    model = build_model(arch, ARCH_INPUTS[arch], 4, seed=1)
    seen = []
    handles = [m.register_forward_pre_hook(lambda module, args: seen.append(float(args[0].detach().min())))
               for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    x = torch.randn(6, *ARCH_INPUTS[arch], generator=torch.Generator().manual_seed(0))
    try:
        for training in (True, False):
            model.train(training)
            seen.clear()
            model(x)
            assert seen[0] < 0 and min(seen[1:]) >= 0, seen       # the input itself may be negative
        seen.clear()
        with lrp_context(model) as modified:
            relevance_batch(modified, model, x, torch.zeros(6, dtype=torch.int64))
        assert seen and min(seen[1:]) >= 0, seen
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("arch", list(ARCH_INPUTS))
def test_our_composite_gives_zennits_relevance_bit_for_bit(arch):
    """One-branch z+ and rules run as the layers' only backward change how LRP runs, not its result."""
    model = build_model(arch, ARCH_INPUTS[arch], 4, seed=1).eval()
    x = torch.rand(5, *ARCH_INPUTS[arch], generator=torch.Generator().manual_seed(0))
    rows = torch.tensor([0, 1, 2, 3, 0])
    masks = [(torch.rand(n, generator=torch.Generator().manual_seed(n)) > 0.3).float()
             for n in model.layer_sizes()]

    def relevance_with(composite):
        with composite.context(model) as modified, model.subnetwork(masks):
            return relevance_batch(modified, model, x, rows, want_input=True)

    reference = relevance_with(EpsilonPlusFlat(canonizers=canonizers_for(model)))
    ours = relevance_with(composite_for(model))
    assert torch.equal(ours.logits, reference.logits) and torch.equal(ours.input, reference.input)
    for a, b in zip(ours.units, reference.units):
        assert torch.equal(a, b)


def test_an_inactive_composite_gives_the_plain_gradient():
    """zennit's ``Composite.inactive`` contract holds for the rerouted rules too."""
    model = build_model("cnn-small", (1, 12, 12), 4, seed=1).eval()
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    rows = torch.tensor([0, 1, 2])
    plain = relevance_batch(model, model, x, rows, want_input=True)
    composite = composite_for(model)
    with composite.context(model) as modified:
        lrp = relevance_batch(modified, model, x, rows, want_input=True)
        with composite.inactive():
            off = relevance_batch(modified, model, x, rows, want_input=True)
    assert torch.equal(off.input, plain.input) and not torch.equal(lrp.input, plain.input)
