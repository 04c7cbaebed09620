"""A subnetwork run as a network of its own units gives the masked pass's activations of those
units (to float32 rounding) on every plain-stack architecture, and is refused for residual ones."""
import pytest
import torch

from rerelrp_core.compact import CompactSubnetwork
from rerelrp_core.models import build_model


def _keep(model, seed):
    draw = torch.Generator().manual_seed(seed)
    keep = [torch.rand(n, generator=draw) < 0.3 for n in model.layer_sizes()]
    for k in keep:
        k[0] = True                     # pruning keeps at least one unit per layer
    return keep


def _masked(model, keep, x):
    """The kept units' outputs of each unit layer in the masked pass."""
    layers = [layer.mask for layer in model.unit_layers]
    for layer in layers:
        layer.recorded = []
    try:
        with torch.no_grad(), model.subnetwork([k.float() for k in keep]):
            model(x)
        return [layer.recorded[0][:, k] for layer, k in zip(layers, keep)]
    finally:
        for layer in layers:
            layer.recorded = None


@pytest.mark.parametrize("arch, shape", [("cnn", (1, 28, 28)), ("cnn-small", (1, 28, 28)),
                                         ("vgg11", (3, 32, 32))])
def test_compact_activations_are_the_masked_ones(arch, shape):
    model = build_model(arch, shape, 10)
    keep = _keep(model, 0)
    x = torch.rand(6, *shape)
    compact = CompactSubnetwork.of(model, keep)
    for got, expected in zip(compact.activations(x), _masked(model, keep, x)):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_residual_networks_keep_the_masked_pass():
    model = build_model("resnet18", (3, 32, 32), 10)
    assert CompactSubnetwork.of(model, _keep(model, 0)) is None
