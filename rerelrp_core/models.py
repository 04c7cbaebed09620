"""Continual-learning networks: unit masks, the task-sliced head, and the built-in networks.

A *unit* is an output channel of a Conv2d or an output neuron of a Linear layer of the backbone.
Where each unit layer's output is complete (after its BatchNorm, when it has one) a
:class:`UnitMask` multiplies it by a per-unit mask, which turns the one network into any task's
subnetwork without copying it, and it is where relevance is read off during LRP. The output layer
(``head``) has one block of rows per task and is not made of units: it is never pruned.

The built-in networks (``cnn``, ``cnn-small``, ``vgg11``, ``resnet18``) are plain modules; like any
other network they become a :class:`ContinualNet` through :func:`~rerelrp_core.adapt.adapt`, which
finds their units and places the masks. In each of them every convolution after the first reads a
ReLU's output (directly or through max-pooling), so its input is never negative; LRP's z+ rule
relies on it where it holds (``lrp_rules.SignChecked`` checks it on every pass).
"""
from collections import OrderedDict
from contextlib import contextmanager

import torch
from torch import nn

from .errors import UserError
from .seeding import seeded


class UnitMask(nn.Module):
    """Sets the outputs of the units its mask prunes to 0 and, while recording, keeps its output for LRP.

    ``mask`` is None (all units on), a (units,) tensor, or a (batch, units) tensor, which gives
    every row of the batch its own subnetwork.
    """

    def __init__(self, n_units):
        super().__init__()
        self.n_units = n_units
        self.mask = None
        self.recorded = None

    def forward(self, x):
        if self.mask is not None:
            x = self._masked(x)
        if self.recorded is not None:
            self.recorded.append(x)
        return x

    def _masked(self, x):
        """``x`` with the pruned units' outputs set to exactly 0 (not multiplied by 0: a pruned
        unit outputs 0 even if a later task drove its free parameters to inf/NaN, and 0 * NaN is
        NaN)."""
        if self.mask.dim() == 1 and _cpu_maps_without_grad(x):
            # the same values as the `where` below, in a third of its time: torch's CPU `where`
            # broadcasts a (1, units, 1, 1) mask slowly over conv maps
            return x.index_fill(1, torch.nonzero(self.mask <= 0).flatten(), 0)
        mask = self.mask if self.mask.dim() == 2 else self.mask.unsqueeze(0)
        mask = mask.view(mask.shape[0], self.n_units, *([1] * (x.dim() - 2)))
        return torch.where(mask > 0, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _cpu_maps_without_grad(x):
    """Whether ``x`` is a batch of CPU feature maps in a pass without gradients (validation, class
    statistics, evaluation), where faster kernels with the same outputs bit for bit may stand in.
    Passes with gradients (training, LRP) keep the plain operations and their backward passes."""
    return not torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() == 4


class MaxPool(nn.MaxPool2d):
    """``nn.MaxPool2d`` with faster CPU kernels in passes without gradients (validation, class
    statistics, evaluation). A maximum is exact whatever the order, so the outputs are bit for bit
    those of ``nn.MaxPool2d``, whose channels-first CPU kernel also works out the indices a
    backward pass would need and takes as long as the convolution before it:
    a 2x2 window with stride 2 is the maximum of four strided views (a sixth of the time); other
    windows pool a channels-last copy. Passes with gradients (training, LRP) pool as
    ``nn.MaxPool2d`` does: which of two equal maxima takes the gradient is left exactly as it was."""

    def forward(self, x):
        if not _cpu_maps_without_grad(x):
            return super().forward(x)
        if self._two_by_two():
            h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
            return torch.maximum(torch.maximum(x[:, :, 0:h:2, 0:w:2], x[:, :, 0:h:2, 1:w:2]),
                                 torch.maximum(x[:, :, 1:h:2, 0:w:2], x[:, :, 1:h:2, 1:w:2]))
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()

    def _two_by_two(self):
        pair = nn.modules.utils._pair
        return (pair(self.kernel_size) == pair(self.stride or self.kernel_size) == (2, 2)
                and pair(self.padding) == (0, 0) and pair(self.dilation) == (1, 1) and not self.ceil_mode)


class UnitLayer:
    """One layer of units: its name, its UnitMask, the modules whose parameters hold one row per
    unit (the Conv2d/Linear and, where present, its BatchNorm), and the number of dimensions of its
    units-first output (4: feature maps, 3: token sequences, 2: a vector per image)."""

    def __init__(self, name, mask, producers, map_dims=None):
        self.name = name
        self.mask = mask
        self.producers = producers
        self.map_dims = map_dims or (4 if isinstance(producers[0], nn.Conv2d) else 2)

    @property
    def n_units(self):
        return self.mask.n_units

    def unit_parameters(self):
        """The parameters that belong to units, each indexed by unit along dimension 0."""
        return [p for module in self.producers for p in (module.weight, module.bias) if p is not None]

    def unit_statistics(self):
        """The BatchNorm running statistics that belong to units, indexed by unit."""
        return [b for module in self.producers if isinstance(module, nn.modules.batchnorm._BatchNorm)
                for b in (module.running_mean, module.running_var) if b is not None]


class ContinualNet(nn.Module):
    """A backbone of unit layers followed by one linear output layer whose rows are sliced per task."""

    zplus_biases = False    # whether LRP's z+ counts the layers' biases (set by adapt)

    def __init__(self, arch, backbone, head, unit_layers, input_shape):
        super().__init__()
        self.arch = arch
        self.backbone = backbone
        self.head = head
        self.unit_layers = unit_layers
        self.input_shape = tuple(input_shape)

    def forward(self, x):
        return self.head(self.backbone(x))

    @property
    def n_classes(self):
        return self.head.out_features

    def layer_sizes(self):
        return [layer.n_units for layer in self.unit_layers]

    def shared_parameters(self):
        """Parameters that belong to no unit and not to the head (LayerNorms, layer scales, tokens,
        BatchNorms after no unit layer): trained with the first task only."""
        owned = {id(p) for layer in self.unit_layers for p in layer.unit_parameters()}
        owned |= {id(p) for p in self.head.parameters()}
        return [p for p in self.parameters() if id(p) not in owned]

    def shared_statistics(self):
        """BatchNorm running statistics of BatchNorms that follow no unit layer (DenseNet's
        pre-activation BatchNorms): kept as the first task left them, like the shared parameters."""
        owned = {id(b) for layer in self.unit_layers for b in layer.unit_statistics()}
        return [b for bn in self.batchnorms() for b in (bn.running_mean, bn.running_var)
                if b is not None and id(b) not in owned]

    def batchnorms(self):
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @contextmanager
    def subnetwork(self, masks):
        """Within the block the model is the subnetwork ``masks`` gives: a list with one (units,) or
        (batch, units) float tensor per unit layer, or None for all units. The previous masks are
        put back on exit, whatever happens inside."""
        previous = [layer.mask.mask for layer in self.unit_layers]
        try:
            for i, layer in enumerate(self.unit_layers):
                layer.mask.mask = None if masks is None else masks[i]
            yield self
        finally:
            for layer, mask in zip(self.unit_layers, previous):
                layer.mask.mask = mask

    def check_input(self, x):
        """Raise a UserError unless ``x`` is a batch shaped (N, *input_shape)."""
        if not torch.is_tensor(x) or x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape or not len(x):
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise UserError(f"Expected a batch of at least one image shaped "
                            f"(N, {', '.join(map(str, self.input_shape))}), got {shape}.")


def small_cnn(input_shape, n_classes, widths=(32, 64), hidden=256):
    """The default model: two 3x3 conv blocks with max-pooling, one hidden dense layer and a
    classifier (a plain module; :mod:`~rerelrp_core.adapt` finds its units like any other's)."""
    channels, height, width = input_shape
    layers, c_in = [], channels
    for i, c_out in enumerate(widths, 1):
        layers += [(f"conv{i}", nn.Conv2d(c_in, c_out, 3, padding=1)), (f"relu{i}", nn.ReLU()),
                   (f"pool{i}", MaxPool(2))]
        c_in, height, width = c_out, height // 2, width // 2
    if height < 1 or width < 1:
        raise UserError(f"Images of size {input_shape[1:]} are too small for the default CNN (at least 4x4).")
    layers += [("flatten", nn.Flatten()), ("fc1", nn.Linear(c_in * height * width, hidden)),
               ("relu_fc1", nn.ReLU()), ("classifier", nn.Linear(hidden, n_classes))]
    return nn.Sequential(OrderedDict(layers))


def vgg11(input_shape, n_classes, hidden=256):
    """torchvision's VGG-11 conv stack for small inputs: first conv takes the input's channels, max
    pools that would shrink the map below 2x2 are dropped, then global average pooling, one hidden
    dense layer and a classifier."""
    from .compat import torchvision
    reference = torchvision.models.vgg11(weights=None)
    channels, size = input_shape[0], min(input_shape[1:])
    layers, c_in = [], channels
    for module in reference.features:
        if isinstance(module, nn.Conv2d):
            number = sum(name.startswith("conv") for name, _ in layers) + 1
            layers.append((f"conv{number}", nn.Conv2d(c_in, module.out_channels, 3, padding=1)))
            c_in = module.out_channels
        elif isinstance(module, nn.MaxPool2d):
            if size // 2 >= 2:
                layers.append((f"pool{len(layers)}", MaxPool(2)))
                size //= 2
        else:
            layers.append((f"relu{len(layers)}", nn.ReLU()))
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc1", nn.Linear(c_in, hidden)),
               ("relu_fc1", nn.ReLU()), ("classifier", nn.Linear(hidden, n_classes))]
    return nn.Sequential(OrderedDict(layers))


def resnet18(input_shape, n_classes):
    """torchvision's ResNet-18 for small inputs: 3x3 stride-1 stem without max-pooling."""
    from .compat import torchvision
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Linear(512, n_classes)
    return net


def tiny_cnn(input_shape, n_classes):
    """A half-width default CNN (about 200k parameters) for quick demos."""
    return small_cnn(input_shape, n_classes, widths=(16, 32), hidden=128)


def _counting_biases(builder):
    """``builder``'s module, asking LRP's z+ to count its layers' biases (as the built-in networks'
    relevance always has; see :mod:`~rerelrp_core.lrp_rules`)."""
    def build(input_shape, n_classes):
        module = builder(input_shape, n_classes)
        module.lrp_zplus_biases = True
        return module
    build.__doc__ = builder.__doc__
    return build


# the built-in networks, as plain modules for (C, H, W) inputs and n_classes outputs
ARCHITECTURES = {name: _counting_biases(builder) for name, builder in
                 {"cnn": small_cnn, "cnn-small": tiny_cnn, "vgg11": vgg11, "resnet18": resnet18}.items()}


def build_model(arch, input_shape, n_classes, seed=0, weights=None, input_size=None):
    """Build model ``arch`` (a built-in name, ``torchvision:NAME`` or ``PATH.py:FUNCTION``, see
    :mod:`~rerelrp_core.architectures`) for inputs shaped (C, H, W) with ``n_classes`` output rows,
    adapted by :func:`~rerelrp_core.adapt.adapt`, started from ``weights`` when given."""
    from .architectures import build_adapted, check_spec
    check_spec(arch)
    with seeded(seed):
        # eval is the resting mode (training switches to train mode per epoch): inference passes
        # then need not switch every module
        return build_adapted(arch, tuple(input_shape), n_classes, weights, input_size).eval()


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def inference_batch(device):
    """Images per forward pass where only the outputs are needed. On a CPU, 128 keeps a pass's
    activations in cache: the default CNN's masked pass over 1,200 Fashion-MNIST images takes
    109-160 ms in batches of 128 against 211-251 ms in batches of 256 and 377 ms in one batch of
    2,048 (2 cores), with the same outputs bit for bit (cnn, cnn-small, vgg11 and resnet18, shared
    and per-row masks). A GPU wants large batches."""
    return 2048 if device.type == "cuda" else 128


@torch.no_grad()
def batched_logits(model, x, masks=None, batch_size=None):
    """Logits of ``x`` (on any device) in batches, through the subnetwork given by ``masks`` (per
    layer (units,), or (N, units): one subnetwork per row of ``x``)."""
    device = next(model.parameters()).device
    batch_size = batch_size or inference_batch(device)
    out = []
    with evaluating(model):
        for i in range(0, len(x), batch_size):
            with model.subnetwork(mask_rows(masks, i, i + batch_size, device)):
                out.append(model(x[i:i + batch_size].to(device)))
    return torch.cat(out) if out else torch.empty(0, model.n_classes, device=device)


@contextmanager
def evaluating(model):
    """``model`` in eval mode within the block; the modules that were training train again after,
    whatever happens inside. Only modules in training mode are switched: ``model.eval()`` walks and
    sets every module, which costs about as much as a one-image forward pass."""
    training = [module for module in model.modules() if module.training]
    for module in training:
        module.training = False
    try:
        yield model
    finally:
        for module in training:
            module.training = True


def mask_rows(masks, start, stop, device):
    """The subnetwork masks of rows start:stop of a batch, on ``device`` (shared (units,) masks pass
    through whole; None stays None)."""
    if masks is None:
        return None
    return [(m[start:stop] if m.dim() == 2 else m).to(device) for m in masks]
