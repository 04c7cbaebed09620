"""The LRP rules for a model: zennit's ``EpsilonPlusFlat``, run with less work, and made to hold on
any architecture.

Where zennit's rules hold (the built-in networks without BatchNorms), the relevance is zennit's bit
for bit (tested). Two changes to how the rules run, none to what they compute:

* :class:`NonNegativeZPlus`: z+ without its branch for negative inputs, which is all zeros when a
  layer's input is never negative; :class:`SignChecked` checks that per layer and pass and runs
  zennit's two-branch z+ where it does not hold (networks with SiLU, GELU, Hardswish, or no
  activation before a convolution);
* :class:`Rerouted`: a layer's rule becomes the *only* backward of the layer. zennit attaches a rule
  through a backward hook on a copy of the layer's input: autograd first runs the layer's plain
  backward (a transposed convolution, a matrix product, a ReLU mask), and the hook then throws
  that result away and puts the rule's relevance in its place. Rerouted hands the layer's output on
  through an autograd function whose backward *is* the rule (zennit's own rule object computes
  it), so the plain backward never runs.

Changes to what is computed, for networks where zennit's rules do not hold: average pools over
inputs that can be negative split by magnitude (:class:`MagnitudeNorm`); z+ leaves biases out
unless the network asks for them (:class:`ReroutedComposite`; the built-in networks do); every
BatchNorm the adapter paired with a layer is merged into it (:func:`canonizers_for`); sums, gates,
activations and normalisations in a model's own forward code get rules of their own
(:mod:`~rerelrp_core.lrp_ops`).
"""
import torch
from zennit.canonizers import NamedMergeBatchNorm
from zennit.composites import EpsilonPlusFlat
from zennit.core import BasicHook, Hook, RemovableHandle, RemovableHandleList, Stabilizer
from zennit.rules import ClampMod, NoMod, Norm, ZPlus
from zennit.types import AvgPool, Convolution

from .lrp_ops import LRPOperations


class NonNegativeZPlus(BasicHook):
    """zennit's ``ZPlus`` rule for a layer whose input is never negative.

    ``ZPlus`` runs two branches: the positive inputs through the positive weights, and the negative
    inputs through the negative weights (bias zeroed). Every convolution after the first one in
    our architectures reads a ReLU's output (``models.py``; tested for each), so the second branch
    sees an all-zero input, outputs exact zeros and adds exactly 0 to the denominator and to the
    relevance. Leaving it out gives bit for bit the same relevance (tested within the composite) and
    saves one convolution and one transposed convolution per layer.
    """

    def __init__(self, stabilizer=1e-6, zero_params=None):
        stabilise = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[lambda input: input.clamp(min=0)],
            param_modifiers=[ClampMod(min=0., zero_params=zero_params)],
            output_modifiers=[lambda output: output],
            gradient_mapper=(lambda out_grad, outputs: [out_grad / stabilise(outputs[0])]),
            reducer=(lambda inputs, gradients: inputs[0] * gradients[0]),
        )


class SignChecked(Hook):
    """``when_non_negative``'s relevance where the layer's input holds no negative value, else
    ``general``'s: checked on every pass instead of assumed from the architecture."""

    def __init__(self, when_non_negative, general):
        super().__init__()
        self.when_non_negative, self.general = when_non_negative, general

    def copy(self):
        return SignChecked(self.when_non_negative.copy(), self.general.copy())

    def backward(self, module, grad_input, grad_output):
        negative = bool((self.stored_tensors["input"][0] < 0).any())
        rule = self.general if negative else self.when_non_negative
        rule.stored_tensors = self.stored_tensors
        return rule.backward(module, grad_input, grad_output)


def checked_zplus(zero_params=None):
    """z+: :class:`NonNegativeZPlus` where a layer's input is never negative, zennit's two-branch
    ``ZPlus`` where it is (the same relevance as ``ZPlus`` in every case)."""
    return SignChecked(NonNegativeZPlus(zero_params=zero_params), ZPlus(zero_params=zero_params))


class MagnitudeNorm(BasicHook):
    """zennit's ``Norm`` on the inputs' magnitudes: an average pool hands each input the share
    ``|x_i| / sum |x|`` of the relevance. ``Norm`` hands it ``x_i / sum x``, which is unbounded where
    negative and positive inputs nearly cancel (an untrained DenseNet's transition pools, after a
    convolution with no activation, grew the relevance 2.5-fold)."""

    def __init__(self, stabilizer=1e-6):
        stabilise = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[torch.abs],
            param_modifiers=[NoMod(param_keys=[])],
            output_modifiers=[lambda output: output],
            gradient_mapper=(lambda out_grad, outputs: out_grad / stabilise(outputs[0])),
            reducer=(lambda inputs, gradients: inputs[0] * gradients[0]),
        )


class _RuleAsBackward(torch.autograd.Function):
    """The layer's output, unchanged, whose backward is ``rule``'s: the relevance for the layer's
    input, computed by zennit's rule object from the saved input and the relevance arriving."""

    @staticmethod
    def forward(ctx, x, output, rule, module):
        ctx.rule, ctx.module = rule, module
        ctx.save_for_backward(x)      # an in-place change of x before the backward pass raises
        # a copy, not ``output`` itself: later layers may change it in place (a residual sum)
        return output.clone()

    @staticmethod
    def backward(ctx, relevance):
        (x,) = ctx.saved_tensors
        ctx.rule.stored_tensors["input"] = (x,)      # what zennit's forward hook would have kept
        try:
            return ctx.rule.backward(ctx.module, (x,), (relevance,))[0], None, None, None
        finally:
            ctx.rule.stored_tensors.clear()


class Rerouted(Hook):
    """Runs zennit rule ``rule`` on a layer as the layer's only backward (see the module docstring).
    Layers that change their input in place keep zennit's own hook, which copies the input first."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def copy(self):
        return Rerouted(self.rule.copy())

    def register(self, module):
        if getattr(module, "inplace", False):
            return self.rule.register(module)
        # first among the layer's forward hooks: a unit mask hooked on the same layer (a conv without
        # a BatchNorm in an adapted network) then masks and records the rerouted output
        return RemovableHandleList([RemovableHandle(self),
                                    module.register_forward_hook(self.forward, prepend=True)])

    def forward(self, module, input, output):
        wanted = torch.is_grad_enabled() and input and torch.is_tensor(input[0]) and input[0].requires_grad
        if not (self.active and wanted):
            return None       # no relevance goes down (or zennit's ``inactive``): the plain graph stays
        rerouted = _RuleAsBackward.apply(input[0], output.detach(), self.rule, module)
        if getattr(output, "lrp_gate", False):      # a sigmoid module's output stays a gate (lrp_ops)
            rerouted.lrp_gate = True
        return rerouted


class ReroutedComposite(EpsilonPlusFlat):
    """zennit's EpsilonPlusFlat with z+ as :func:`checked_zplus`, average pooling's ``Norm`` as
    :class:`MagnitudeNorm` where its input can be negative, and every rule :class:`Rerouted`.
    Attention gets no rule of zennit's (its base map would pass relevance straight through a
    module with three inputs): the plain gradient runs there, which does not conserve.

    ``bias_free_zplus``: z+ leaves biases out (zennit's ``zero_params``), so each convolution hands
    on all of its relevance. Used for adapted networks: merging BatchNorms gives every convolution
    a bias, and the share each one absorbs compounds over tens of layers (an untrained MobileNetV2
    with calibrated BatchNorms keeps 0.04 % of the relevance by its eighth block with biases)."""

    def __init__(self, canonizers=None, bias_free_zplus=False):
        zplus = checked_zplus(zero_params=["bias"] if bias_free_zplus else None)
        pool = SignChecked(Norm(), MagnitudeNorm())
        super().__init__(layer_map=[(torch.nn.MultiheadAttention, None), (Convolution, zplus),
                                    (AvgPool, pool)], canonizers=canonizers)
        choose = self.module_map

        def rerouted(ctx, name, module):
            rule = choose(ctx, name, module)
            return None if rule is None else Rerouted(rule)
        self.module_map = rerouted


def composite_for(model):
    """The LRP composite for ``model`` (with the canonizers its architecture needs)."""
    return ReroutedComposite(canonizers=canonizers_for(model), bias_free_zplus=not model.zplus_biases)


def canonizers_for(model):
    """The zennit canonizers LRP needs for ``model``: the built-in ResNet-18's residual sums through
    zennit's ResNet canonizer, and every unit layer's BatchNorm merged into its conv or linear layer
    (the pairs :mod:`~rerelrp_core.adapt` found by running the model). Residual sums, gates and
    functional activations elsewhere are :class:`~rerelrp_core.lrp_ops.LRPOperations`' job."""
    if model.arch == "resnet18":
        from zennit.torchvision import ResNetCanonizer

        from .compat import torchvision  # noqa: F401  (zennit.torchvision imports torchvision)
        return [ResNetCanonizer()]
    names = {module: name for name, module in model.named_modules()}
    pairs = [([names[layer.producers[0]]], names[layer.producers[1]])
             for layer in model.unit_layers if len(layer.producers) == 2]
    return [NamedMergeBatchNorm(pairs)] if pairs else []


def operations_for(model):
    """The function mode that gives functional sums, gates and activations their LRP rules during
    a forward pass of ``model`` (a context manager)."""
    return LRPOperations()


# module types that no rule here covers: relevance crosses them as a plain gradient
NO_RULE = (torch.nn.MultiheadAttention,)


def lrp_caveat(model):
    """One sentence when ``model`` has layers whose relevance no LRP rule here covers, or attention
    written as plain matrix products (Swin, MaxViT), else None."""
    kinds = {type(m).__name__ for m in model.modules() if isinstance(m, NO_RULE)}
    kinds |= {type(m).__name__ for m in model.modules() if "Attention" in type(m).__name__}
    if not kinds:
        return None
    return (f"This network has attention ({', '.join(sorted(kinds))}), for which no LRP rule is implemented "
            "here (AttnLRP's is not): relevance crosses it as a plain gradient, so its explanations do not "
            "conserve.")
