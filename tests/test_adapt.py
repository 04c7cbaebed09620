"""Any image classifier as a continual-learning network: every torchvision classification model
adapts; a small family list (and a user's own module through PATH.py:FUNCTION) trains two tasks with
task-aware forgetting exactly 0, frozen bits unchanged, LRP that conserves as bench/README's table
states, and a saved run that reopens with the same predictions. Bad models and weights files end in
one sentence and write nothing."""
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rerelrp_core.adapt import adapt
from rerelrp_core.architectures import build_module, torchvision_names
from rerelrp_core.cli import main
from rerelrp_core.config import make_config
from rerelrp_core.data import SplitConfig
from rerelrp_core.errors import UserError
from rerelrp_core.models import build_model
from rerelrp_core.pathways import GROWTH_LIMIT
from rerelrp_core.relevance import lrp_context, relevance_batch
from rerelrp_core.runs import load_run, save_run
from rerelrp_core.sequence import train_sequence

OWN = str(Path(__file__).parent / "models" / "own_net.py")

# family -> the least share of the relevance entering the backbone that reaches the input, for the
# untrained network with BatchNorm statistics of real digits at 32 px (measured 2026-12-07: 1.000,
# 1.000, 0.048, 1.150, 1.000, 0.027, 1.000; bench/architectures.py measures every family). Depthwise
# networks lose relevance where a unit's output is made by its bias alone (z+ has nothing to give
# it to); growth beyond GROWTH_LIMIT would be a broken rule.
FAMILIES = {
    f"{OWN}:build": 0.95,
    "torchvision:resnet18": 0.95,
    "torchvision:mobilenet_v3_small": 0.02,
    "torchvision:regnet_y_400mf": 0.9,
    "torchvision:squeezenet1_1": 0.95,
    "torchvision:efficientnet_b0": 0.01,
    "torchvision:convnext_tiny": 0.95,       # LayerNorms, layer scales: shared parameters
}


def test_every_torchvision_classification_model_adapts():
    """All of torchvision's classification models, built on the meta device where they can be (no
    weights, no memory), adapt: units found, the classifier became the head."""
    names = torchvision_names()
    assert len(names) >= 80
    for name in names:
        try:
            with torch.device("meta"):
                module = build_module(f"torchvision:{name}")
        except NotImplementedError:     # RegNet computes its widths with tensors: build it for real
            module = build_module(f"torchvision:{name}")
        big = any(k in name for k in ("vit", "swin", "maxvit"))
        net = adapt(module, (1, 28, 28), 10, input_size=224 if big else 75 if "inception" in name else 64)
        assert net.unit_layers and net.head.out_features == 10, name
        assert all(layer.n_units == layer.producers[0].weight.shape[0] for layer in net.unit_layers), name


@pytest.fixture(scope="module")
def split():
    return SplitConfig(n_tasks=2, classes_per_task=[2, 2], seed=0)


def unit_values(model, keep, shared):
    values = [p.detach()[k].clone() for layer, k in zip(model.unit_layers, keep)
              for p in layer.unit_parameters() + layer.unit_statistics()]
    return values + [p.detach().clone() for p in shared]


@pytest.mark.parametrize("arch", [arch for arch in FAMILIES if "convnext" not in arch])   # 70 s: bench only
def test_family_trains_with_exact_protection(arch, digits, split, tmp_path, caplog):
    size = 32 if arch.startswith("torchvision") else None
    config = make_config(method="rerelrp", arch=arch, input_size=size, epochs=2, lr=0.01, batch_size=32,
                         ref_per_class=8, device="cpu")
    after_first = {}

    def remember(run):
        if run.tasks_done == 1:
            keep = run.learner.ownership.task_masks[0]
            after_first["values"] = unit_values(run.model, keep, run.model.shared_parameters())
    run = train_sequence(digits, split, config, on_task_end=remember)
    assert "non-finite" not in caplog.text
    assert run.metrics["forgetting_taw"] == 0.0
    assert run.history["acc_taw"][1][0] == run.history["acc_taw"][0][0]
    keep = run.learner.ownership.task_masks[0]
    current = unit_values(run.model, keep, run.model.shared_parameters())
    for before, now in zip(after_first["values"], current):
        assert torch.equal(before, now)
    # trained, the relevance may shrink (biases) but never grows beyond what a working rule allows
    assert abs(conservation(run.model, digits.x_test[:8])) <= GROWTH_LIMIT
    x = digits.x_test[:16]
    save_run(run, tmp_path / "run")
    again = load_run(tmp_path / "run", device="cpu")
    assert torch.equal(again.learner.predict_tag(x), run.learner.predict_tag(x))
    assert torch.equal(again.learner.predict_taw(x, 0), run.learner.predict_taw(x, 0))


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_family_relevance_conserves_as_the_table_states(arch, digits):
    """On the untrained network with BatchNorm statistics of real digits (bench/architectures.py's
    setting), at least the stated share of the relevance entering the backbone reaches the input."""
    size = 32 if arch.startswith("torchvision") else None
    model = build_model(arch, digits.input_shape, 4, input_size=size)
    model.train()
    with torch.no_grad():
        model(digits.x_train[:256])
    model.eval()
    assert FAMILIES[arch] <= conservation(model, digits.x_test[:8]) <= GROWTH_LIMIT


def conservation(model, x):
    """The least share, over ``x``, of the relevance at the head's input that reaches the input."""
    entering = {}
    handle = model.head.register_full_backward_hook(lambda m, grad_in, _: entering.update(r=grad_in[0]))
    try:
        with lrp_context(model) as modified:
            out = relevance_batch(modified, model, x, torch.zeros(len(x), dtype=torch.int64), want_input=True)
    finally:
        handle.remove()
    return float((out.input.flatten(1).sum(1) / entering["r"].sum(1)).min())


def test_grey_images_are_repeated_for_a_colour_network(caplog):
    with caplog.at_level(logging.INFO, logger="rerelrp_core.adapt"):
        net = build_model(f"{OWN}:build", (1, 8, 8), 4)
    assert "repeated across the model's 3 input channels" in caplog.text
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 4)


def test_pretrained_weights_are_read_without_the_classifier(tmp_path):
    module = build_module(f"{OWN}:build")
    tensors = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in module.state_dict().items()}
    tensors["fc.weight"] = torch.randn(1000, 8)       # another classifier width: left out
    tensors["fc.bias"] = torch.randn(1000)
    save_file(tensors, str(tmp_path / "w.safetensors"))
    torch.save(tensors, tmp_path / "w.pt")
    for file in ("w.safetensors", "w.pt"):
        net = build_model(f"{OWN}:build", (3, 8, 8), 4, weights=str(tmp_path / file))
        assert torch.equal(net.backbone.module.conv1.weight, tensors["conv1.weight"])


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize("case, words", [
    ("wrong-shape", "tensor 'conv1.weight' is shaped (3, 8, 3, 3) but the model's is (8, 8, 3, 3)"),
    ("code", "never run"),
    ("missing-file", "does not exist"),
    ("function-raises", "raised RuntimeError: no GPU here"),
    ("not-a-module", "returned a str, not a torch.nn.Module"),
    ("wrong-output", "not a (batch, classes) tensor of logits"),
    ("no-function", "has no function named 'nothing'"),
    ("no-linear", "has no Linear classifier whose output is the model's output"),
])
def test_bad_models_and_weights_are_one_sentence_and_write_nothing(case, words, tmp_path, capsys):
    arch, weights = f"{OWN}:build", None
    if case == "wrong-shape":
        tensors = build_module(arch).state_dict()
        tensors["conv1.weight"] = torch.zeros(3, 8, 3, 3)
        save_file(dict(tensors), str(tmp_path / "w.safetensors"))
        weights = str(tmp_path / "w.safetensors")
    elif case == "code":
        torch.save({"conv1.weight": Payload()}, tmp_path / "w.pt")
        weights = str(tmp_path / "w.pt")
    else:
        arch = {"missing-file": str(tmp_path / "none.py") + ":build", "function-raises": f"{OWN}:broken",
                "not-a-module": f"{OWN}:not_a_module", "wrong-output": f"{OWN}:wrong_output",
                "no-function": f"{OWN}:nothing", "no-linear": f"{OWN}:no_linear"}[case]
    args = ["train", "--dataset", "digits", "--model", arch, "--tasks", "2", "--epochs", "1",
            "--device", "cpu",
            "--out", str(tmp_path / "run"), "--quiet"] + (["--weights", weights] if weights else [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and err.count("\n") == 0, err
    assert "this ran" not in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_a_run_whose_model_file_is_gone_says_so(digits, split, tmp_path):
    source = tmp_path / "net.py"
    source.write_text(Path(OWN).read_text())
    config = make_config(method="finetune", arch=f"{source}:build", epochs=1, device="cpu")
    save_run(train_sequence(digits, split, config), tmp_path / "run")
    source.unlink()
    with pytest.raises(UserError, match=r"model .* cannot be built here: Model file .* does not exist"):
        load_run(tmp_path / "run")


def test_stages_group_layers_by_module_path():
    from rerelrp_core.explain import stage_of
    assert stage_of("features.3.block.1.0") == "features.3"
    assert stage_of("layer2.0.conv1") == "layer2"
    assert stage_of("trunk_output.block2.block2-0.f.a.0") == "trunk_output.block2"
    assert stage_of("features.denseblock2.denselayer3.conv1") == "features.denseblock2"
    assert stage_of("fc") == "fc"


class _SkipAroundBatchNorm(torch.nn.Module):
    """A conv whose output goes into a BatchNorm *and* around it."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        y = self.conv(x)
        return self.fc((self.bn(y) + y).mean((2, 3)))


def test_a_mask_goes_after_the_batchnorm_only_where_nothing_else_reads_the_layer():
    net = adapt(_SkipAroundBatchNorm(), (1, 8, 8), 3)
    assert net.unit_layers[0].producers == [net.backbone.module.conv]     # masked at the conv itself
    x = torch.rand(2, 1, 8, 8)
    with net.subnetwork([torch.tensor([1.0, 0.0, 1.0, 1.0])]):
        pruned = net(x)
    with torch.no_grad():
        net.backbone.module.conv.weight[1] += 5.0            # a pruned unit changes: the output does not
    with net.subnetwork([torch.tensor([1.0, 0.0, 1.0, 1.0])]):
        assert torch.equal(net(x), pruned)
