"""zennit's LRP rules, run with less work: the same relevance, bit for bit (tested against zennit's
``EpsilonPlusFlat`` on every architecture).

Two changes to how the rules run, none to what they compute:

* :class:`NonNegativeZPlus`: z+ without its branch for negative inputs, which is all zeros here;
* :class:`Rerouted`: a layer's rule becomes the *only* backward of the layer. zennit attaches a rule
  through a backward hook on a copy of the layer's input: autograd first runs the layer's plain
  backward (a transposed convolution, a matrix product, a ReLU mask), and the hook then throws
  that result away and puts the rule's relevance in its place. Rerouted hands the layer's output on
  through an autograd function whose backward *is* the rule (zennit's own rule object computes
  it), so the plain backward never runs.
"""
import torch
from zennit.composites import EpsilonPlusFlat
from zennit.core import BasicHook, Hook, RemovableHandle, RemovableHandleList, Stabilizer
from zennit.rules import ClampMod
from zennit.types import Convolution

from .models import canonizers_for


class NonNegativeZPlus(BasicHook):
    """zennit's ``ZPlus`` rule for a layer whose input is never negative.

    ``ZPlus`` runs two branches: the positive inputs through the positive weights, and the negative
    inputs through the negative weights (bias zeroed). Every convolution after the first one in
    our architectures reads a ReLU's output (``models.py``; tested for each), so the second branch
    sees an all-zero input, outputs exact zeros and adds exactly 0 to the denominator and to the
    relevance. Leaving it out gives bit for bit the same relevance (tested within the composite) and
    saves one convolution and one transposed convolution per layer.
    """

    def __init__(self, stabilizer=1e-6):
        stabilise = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[lambda input: input.clamp(min=0)],
            param_modifiers=[ClampMod(min=0.)],
            output_modifiers=[lambda output: output],
            gradient_mapper=(lambda out_grad, outputs: [out_grad / stabilise(outputs[0])]),
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
        return RemovableHandleList([RemovableHandle(self), module.register_forward_hook(self.forward)])

    def forward(self, module, input, output):
        wanted = torch.is_grad_enabled() and input and torch.is_tensor(input[0]) and input[0].requires_grad
        if not (self.active and wanted):
            return None       # no relevance goes down (or zennit's ``inactive``): the plain graph stays
        return _RuleAsBackward.apply(input[0], output.detach(), self.rule, module)


class ReroutedComposite(EpsilonPlusFlat):
    """zennit's EpsilonPlusFlat with z+ as :class:`NonNegativeZPlus` and every rule
    :class:`Rerouted`."""

    def __init__(self, canonizers=None):
        super().__init__(layer_map=[(Convolution, NonNegativeZPlus())], canonizers=canonizers)
        choose = self.module_map

        def rerouted(ctx, name, module):
            rule = choose(ctx, name, module)
            return None if rule is None else Rerouted(rule)
        self.module_map = rerouted


def composite_for(model):
    """The LRP composite for ``model`` (with the canonizers its architecture needs)."""
    return ReroutedComposite(canonizers=canonizers_for(model))
