"""Any PyTorch image classifier as a continual-learning network: this module decides what a unit is
and where its mask sits.

A *unit* is an output channel of a ``Conv2d`` or an output feature of a ``Linear`` that the model
calls in its forward pass, except the final classifier. Its :class:`~rerelrp_core.models.UnitMask`
sits where the unit's output is complete: after the BatchNorm that normalises it when the layer's
output goes straight into one, else right after the layer. A residual sum is not a unit: the masks
sit on both branches before it. The final ``Linear`` (the layer whose output *is* the model's output)
becomes the task-sliced head.

The structure is found by running the model once on a small probe batch (on the meta device when
the model lives there) with hooks on every module, so it works for any module written in any style
(``nn.Sequential``, torchvision's classes, a user's own ``forward`` with functional ops); the masks
are forward hooks, so the module's own code and parameter names stay as they are.

Parameters that belong to no unit (LayerNorm, layer scales, class tokens, positional embeddings,
attention projections called functionally, BatchNorms that follow no unit layer, layers whose output
is not one row per image) are *shared*:
ReReLRP trains them with task 0 and freezes them after it, so task-aware forgetting stays exactly 0.
"""
import logging

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from .errors import UserError
from .models import ContinualNet, UnitLayer, UnitMask

log = logging.getLogger(__name__)

UNIT_TYPES = (nn.Conv2d, nn.Linear)
# layers with per-output parameters that a mask along one axis cannot turn off cleanly
UNMASKABLE = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Bilinear)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
PROBE_BATCH = 3     # an unusual size, so a layer whose output is not one row per image shows itself


class InputAdapter(nn.Module):
    """What comes before the user's module: grey images repeated across the colour channels it
    expects, and a resize to the size it needs (bilinear, so each output pixel is a weighted mean
    of input pixels with weights summing to 1: LRP relevance passes through it conserved)."""

    def __init__(self, repeat=1, size=None):
        super().__init__()
        self.repeat = repeat
        self.size = size

    def forward(self, x):
        if self.repeat > 1:
            x = x.expand(-1, self.repeat, -1, -1)
        if self.size is not None and tuple(x.shape[2:]) != (self.size, self.size):
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                          align_corners=False)
        return x

    def extra_repr(self):
        return f"repeat={self.repeat}, size={self.size}"


class Adapted(nn.Module):
    """The user's module behind an :class:`InputAdapter`, its classifier replaced by ``Identity``
    (the head lives in :class:`~rerelrp_core.models.ContinualNet`)."""

    def __init__(self, adapter, module):
        super().__init__()
        self.adapter = adapter
        self.module = module

    def forward(self, x):
        return self.module(self.adapter(x)).flatten(1)     # SqueezeNet's pooled maps: (N, C, 1, 1) flat


class MaskHook:
    """The forward hook that applies a UnitMask to a module's output. For a ``Linear`` applied to
    feature maps or token sequences (units on the last axis) the mask works on a units-first view.
    While relevance is recorded the output is handed on as a copy, so that an in-place operation
    further on (``out += identity``, ``nn.ReLU(inplace=True)``) cannot change what was recorded."""

    def __init__(self, unit_mask, axis):
        self.unit_mask = unit_mask
        self.axis = axis

    def __call__(self, module, args, output):
        unit = self.unit_mask
        if unit.mask is None and unit.recorded is None:
            return None
        moved = self.axis != 1 and output.dim() > 2
        units_first = output.movedim(self.axis, 1) if moved else output
        out = unit(units_first)
        if unit.recorded is not None:
            out = out.clone()
        return out.movedim(1, self.axis) if moved else out


def expected_channels(module):
    """The colour channels the first convolution reads (None when the first layer is not a conv)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            return layer.in_channels
        if isinstance(layer, nn.Linear):
            return None
    return None


class _Trace(TorchFunctionMode):
    """What one probe forward shows: the unit layers in call order with their outputs, the
    BatchNorms each output goes into, and how many operations use each output (as a torch
    function mode it sees every operation, functional ones included)."""

    def __init__(self, module):
        super().__init__()
        self.names = {m: name for name, m in module.named_modules()}
        self.calls = []          # (module, output) of every Conv2d / Linear call, in order
        self.bn_inputs = []      # (BatchNorm, its input) of every BatchNorm call, inputs kept alive
        self.uses = {}           # id(unit output) -> operations that computed a tensor from it
        self.handles = []
        for m in module.modules():
            if isinstance(m, UNIT_TYPES):
                self.handles.append(m.register_forward_hook(self._unit_called))
            elif isinstance(m, BATCHNORMS):
                self.handles.append(m.register_forward_pre_hook(self._bn_called))
            elif isinstance(m, UNMASKABLE):
                self.handles.append(m.register_forward_hook(self._unmaskable))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if any(torch.is_tensor(r) for r in tree_leaves(result)):      # not .dim(), .size(), ...
            for value in tree_leaves((args, kwargs)):
                if torch.is_tensor(value) and id(value) in self.uses:
                    self.uses[id(value)] += 1
        return result

    def _unit_called(self, module, args, output):
        if any(m is module for m, _ in self.calls):
            raise UserError(f"Module '{self.names[module]}' is called more than once per forward pass; "
                            "its units cannot have one mask each.")
        self.calls.append((module, output))
        self.uses[id(output)] = 0       # the output stays alive in calls: its id is not reused

    def _bn_called(self, module, args):
        if args and torch.is_tensor(args[0]):
            self.bn_inputs.append((module, args[0]))

    def normaliser(self, layer, output):
        """The BatchNorm that ``layer``'s ``output`` goes straight into (the same tensor) when nothing
        else uses that output, else None: a mask after the BatchNorm would leave the other use of a
        pruned unit's output open, and an old subnetwork would see a free unit change."""
        if self.uses[id(output)] != 1:
            return None
        for bn, seen in self.bn_inputs:
            if seen is output and bn.num_features == layer.weight.shape[0]:
                return bn
        return None

    def _unmaskable(self, module, args, output):
        raise UserError(f"Module '{self.names[module]}' is a {type(module).__name__}, a layer type whose "
                        "units the engine cannot mask (it masks Conv2d channels and Linear features).")

    def remove(self):
        for handle in self.handles:
            handle.remove()


def trace(module, input_shape):
    """Run ``module`` once on a probe batch and return the :class:`_Trace` and its output."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    probe = torch.zeros(PROBE_BATCH, *input_shape, device=device)
    found = _Trace(module)
    training = module.training
    module.eval()
    try:
        with torch.no_grad(), found:
            output = module(probe)
    except UserError:
        raise
    except Exception as error:     # a user's module may raise anything: say what and where
        shape = "x".join(map(str, input_shape))
        raise UserError(f"The model could not run on a batch shaped (N, {shape}): "
                        f"{type(error).__name__}: {str(error).splitlines()[0][:200]}") from None
    finally:
        found.remove()
        module.train(training)
    return found, output


def _classifier(found, output):
    """The final layer: the last Linear called when its output is the model's output, or (as in
    SqueezeNet) a last 1x1 convolution with one channel per class whose maps are only pooled."""
    if not torch.is_tensor(output) or output.dim() != 2 or output.shape[0] != PROBE_BATCH:
        what = f"shape {tuple(output.shape)}" if torch.is_tensor(output) else f"a {type(output).__name__}"
        raise UserError(f"The model returns {what} for a batch of {PROBE_BATCH} images, not a "
                        f"(batch, classes) tensor of logits.")
    last, out = found.calls[-1] if found.calls else (None, None)
    if isinstance(last, nn.Linear) and out is output:
        return last
    if (isinstance(last, nn.Conv2d) and last.kernel_size == (1, 1) and last.groups == 1
            and last.out_channels == output.shape[1]):
        return last
    name = f" (the last layer called is '{found.names[last]}')" if last is not None else ""
    raise UserError(f"The model has no Linear classifier whose output is the model's output{name}; "
                    "the engine needs one to slice into task heads.")


def _replace(root, path, new):
    """Put ``new`` at dotted ``path`` inside ``root``."""
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def adapt(module, input_shape, n_classes, arch="custom", input_size=None):
    """``module`` (any image classifier) as a :class:`~rerelrp_core.models.ContinualNet` for images
    shaped ``input_shape`` (C, H, W) with ``n_classes`` output rows.

    ``input_size``: resize inputs to this square size inside the model (for networks that need
    larger images than the data set has). Grey images fed to a network whose first convolution
    reads 3 channels are repeated across them. The module is changed in place (its classifier
    becomes ``Identity``) and becomes part of the returned network.
    """
    if not isinstance(module, nn.Module):
        raise UserError(f"Expected a torch.nn.Module, got a {type(module).__name__}.")
    if len(input_shape) != 3:
        raise UserError(f"Images must be shaped (C, H, W); got {tuple(input_shape)}.")
    adapter = InputAdapter(_channel_repeat(module, input_shape[0]), input_size)
    seen_shape = (input_shape[0] * adapter.repeat, *([input_size] * 2 if input_size else input_shape[1:]))
    found, output = trace(module, seen_shape)
    classifier = _classifier(found, output)
    names = found.names
    unit_layers, hooks = [], []
    for layer, out in found.calls:
        if layer is classifier or out.dim() < 2 or out.shape[0] != PROBE_BATCH:
            continue    # not one row per image (SwinV2's position-bias MLP reads a table): shared
        bn = found.normaliser(layer, out)
        where = bn if bn is not None else layer
        axis = 1 if isinstance(layer, nn.Conv2d) else -1
        mask = UnitMask(layer.weight.shape[0])
        hooks.append((where, MaskHook(mask, axis)))
        unit_layers.append(UnitLayer(names[layer], mask, [layer] + ([bn] if bn is not None else []),
                                     map_dims=out.dim()))
    if not unit_layers:
        raise UserError("The model has no Conv2d or Linear layer before its classifier: it has no units to "
                        "protect.")
    head_path = names[classifier]
    _replace(module, head_path, nn.Identity())
    # a Linear made for these classes becomes the head as it is (the built-in networks'); any other
    # classifier is replaced by a new head on the same features
    head = (classifier if isinstance(classifier, nn.Linear) and classifier.out_features == n_classes
            else nn.Linear(classifier.weight.shape[1], n_classes))
    for where, hook in hooks:
        where.register_forward_hook(hook)
    net = ContinualNet(arch, Adapted(adapter, module), head, unit_layers, input_shape)
    # registered as modules, so that a deep copy of the network gives its hooks the copied masks
    net.unit_masks = nn.ModuleList([layer.mask for layer in unit_layers])
    net.classifier_path = head_path
    # whether LRP's z+ counts the layers' biases: a module may ask for it (the built-in networks,
    # whose relevance has always counted them); else they are left out (see lrp_rules)
    net.zplus_biases = bool(getattr(module, "lrp_zplus_biases", False))
    return net


def _channel_repeat(module, channels):
    """How often the data's channels are repeated for the module (1: as they are)."""
    wanted = expected_channels(module)
    if wanted is None or wanted == channels:
        return 1
    if channels == 1:
        log.info("Grey images are repeated across the model's %d input channels.", wanted)
        return wanted
    raise UserError(f"The model's first convolution reads {wanted} channels but the images have {channels}; "
                    "use a data set with as many channels (or a model made for them).")
