"""torchvision VGG-11 and ResNet-18 adapted to small inputs: they train, LRP (with the ResNet
canonizer) gives finite relevance, and freezing stays bit-exact with BatchNorm."""
import pytest
import torch

from rerelrp_core.errors import UserError
from rerelrp_core.learners.rerelrp import ReReLRP
from rerelrp_core.models import build_model
from rerelrp_core.relevance import unit_relevance

from conftest import small_config


@pytest.mark.parametrize("arch", ["vgg11", "resnet18"])
def test_torchvision_models_train_prune_and_freeze(arch, digits, digits_tasks):
    model = build_model(arch, digits.input_shape, 6)
    assert model(digits_tasks[0].x_val[:4]).shape == (4, 6)
    learner = ReReLRP(model, small_config(epochs=1, arch=arch, lr=0.01))
    first, second = digits_tasks[0], digits_tasks[1]
    learner.train_task(first)
    learner.consolidate(first)
    relevance = unit_relevance(model, first.x_val[:16], first.y_val[:16] + first.offset)
    assert all(torch.isfinite(r).all() for r in relevance)
    assert any(r.abs().sum() > 0 for r in relevance)
    frozen = learner.ownership.frozen()
    before = [p.detach()[f].clone() for layer, f in zip(model.unit_layers, frozen)
              for p in layer.unit_parameters()]
    stats = [b[f].clone() for layer, f in zip(model.unit_layers, frozen) for b in layer.unit_statistics()]
    taw = learner.predict_taw(first.x_test, 0)
    learner.train_task(second)
    after = [p.detach()[f] for layer, f in zip(model.unit_layers, frozen) for p in layer.unit_parameters()]
    assert all(torch.equal(b, a) for b, a in zip(before, after))
    # frozen units' BatchNorm statistics are put back; free units' follow the new task
    now = [b[f] for layer, f in zip(model.unit_layers, frozen) for b in layer.unit_statistics()]
    assert all(torch.equal(s, n) for s, n in zip(stats, now))
    assert torch.equal(learner.predict_taw(first.x_test, 0), taw)


def test_unknown_model_and_too_small_input():
    with pytest.raises(UserError, match="Unknown model 'lenet'"):
        build_model("lenet", (1, 28, 28), 10)
    with pytest.raises(UserError, match="too small"):
        build_model("cnn", (1, 2, 2), 10)


def test_batched_passes_give_every_row_its_own_subnetwork_across_batches():
    """Per-row masks are cut with the rows: each row gets its own subnetwork whatever the batch size
    (up to float rounding: kernels for other batch sizes may round differently)."""
    from rerelrp_core.models import batched_logits
    from rerelrp_core.recognition_spaces import unit_activations
    model = build_model("cnn-small", (1, 12, 12), 4, seed=2)
    x = torch.rand(10, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    draw = torch.Generator().manual_seed(1)
    masks = [(torch.rand(10, n, generator=draw) > 0.5).float() for n in model.layer_sizes()]
    alone = torch.cat([batched_logits(model, x[i:i + 1], [m[i:i + 1] for m in masks]) for i in range(10)])
    for batch_size in (3, None):
        torch.testing.assert_close(batched_logits(model, x, masks, batch_size=batch_size), alone,
                                   rtol=0, atol=1e-6)
    assert (batched_logits(model, x) - alone).abs().max() > 1e-3      # the masks matter here
    activations = torch.cat([unit_activations(model, [m[i:i + 1] for m in masks], x[i:i + 1])
                             for i in range(10)])
    torch.testing.assert_close(unit_activations(model, masks, x, batch_size=4), activations,
                               rtol=0, atol=1e-6)


def test_unit_mask_without_gradients_zeroes_pruned_units_as_where_does():
    from rerelrp_core.models import UnitMask
    x = torch.randn(4, 6, 5, 5, generator=torch.Generator().manual_seed(0))
    x[:, 1] = float("nan")                              # a pruned unit whose weights went NaN
    mask = UnitMask(6)
    mask.mask = torch.tensor([1.0, 0, 1, 0, 0, 1])
    expected = torch.where(mask.mask.view(1, 6, 1, 1) > 0, x, 0.0)
    with torch.no_grad():
        assert torch.equal(mask(x), expected)           # CPU maps: index_fill
    assert torch.equal(mask(x.requires_grad_(True)).detach(), expected)      # with gradients: where


def test_max_pooling_without_gradients_gives_torchs_maxima_bit_for_bit():
    from rerelrp_core.models import MaxPool
    x = torch.randn(8, 16, 14, 14, generator=torch.Generator().manual_seed(0)).relu()   # many tied zeros
    x[:, :, :2, :2] = 0.5                                                                # tied maxima
    odd = x[:, :, :7, :7].clone()                                                        # 7x7 -> 3x3
    odd[0, 0, 1, 1] = float("nan")                                                        # NaN wins
    with torch.no_grad():
        for inputs in (x, odd):
            for window in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}):
                pooled = MaxPool(**window)(inputs)
                torch.testing.assert_close(pooled, torch.nn.MaxPool2d(**window)(inputs), rtol=0, atol=0,
                                           equal_nan=True)
                assert pooled.is_contiguous()
    grad_input = x.clone().requires_grad_(True)
    MaxPool(2)(grad_input).sum().backward()                # with gradients: torch's own pooling
    reference = x.clone().requires_grad_(True)
    torch.nn.MaxPool2d(2)(reference).sum().backward()
    assert torch.equal(grad_input.grad, reference.grad)


@pytest.mark.parametrize("arch", ["cnn", "vgg11", "resnet18"])
def test_built_in_networks_are_plain_modules_adapted_like_any_other(arch):
    """No special path: a built-in network is a plain module (no mask module in it) that
    rerelrp_core.adapt turns into a ContinualNet, finding the same unit layers, placing each mask
    after the layer's BatchNorm where it has one, and keeping its classifier as the head."""
    from torch import nn

    from rerelrp_core.adapt import Adapted
    from rerelrp_core.models import ARCHITECTURES, UnitMask, build_model
    module = ARCHITECTURES[arch]((1, 8, 8), 6)
    assert not any(isinstance(m, UnitMask) for m in module.modules())
    net = build_model(arch, (1, 8, 8), 6)
    assert isinstance(net.backbone, Adapted) and net.zplus_biases
    names = [layer.name for layer in net.unit_layers]
    if arch == "resnet18":
        assert len(names) == 20 and "layer2.0.downsample.0" in names
        assert all(isinstance(layer.producers[1], nn.BatchNorm2d) for layer in net.unit_layers)
    else:
        assert names[0] == "conv1" and names[-1] == "fc1"
        assert all(len(layer.producers) == 1 for layer in net.unit_layers)
    assert net.head.out_features == 6 and isinstance(net.backbone.module.get_submodule(net.classifier_path),
                                                     nn.Identity)
