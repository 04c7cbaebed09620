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
    stats = [bn.running_mean.clone() for bn in model.batchnorms()]
    taw = learner.predict_taw(first.x_test, 0)
    learner.train_task(second)
    after = [p.detach()[f] for layer, f in zip(model.unit_layers, frozen) for p in layer.unit_parameters()]
    assert all(torch.equal(b, a) for b, a in zip(before, after))
    assert all(torch.equal(s, bn.running_mean) for s, bn in zip(stats, model.batchnorms()))
    assert torch.equal(learner.predict_taw(first.x_test, 0), taw)


def test_unknown_model_and_too_small_input():
    with pytest.raises(UserError, match="Unknown model 'lenet'"):
        build_model("lenet", (1, 28, 28), 10)
    with pytest.raises(UserError, match="too small"):
        build_model("cnn", (1, 2, 2), 10)
