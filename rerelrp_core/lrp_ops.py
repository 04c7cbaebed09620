"""LRP rules for the operations a network does in its own ``forward`` code, not through modules:
residual sums, gates and activations called as functions.

zennit attaches its rules to modules, so ``out += identity`` in a residual block, ``scale * x`` in a
squeeze-excitation block or ``F.relu(x)`` in a user's forward run their plain gradient during LRP:
a sum hands the whole relevance to *both* of its inputs (relevance doubles at every residual
block), a gate scales it, and an activation's derivative reshapes it. While an LRP pass runs
forward, :class:`LRPOperations` (a torch function mode) gives these operations their LRP rules:

* a sum of two activations: each input gets the share of the relevance that its magnitude has
  of both (``R_a = |a| / (|a| + |b|) * R``), so the sum conserves;
* a product of an activation and something smaller that broadcasts onto it (a squeeze-excitation
  gate, a layer scale) or a constant: the gate is treated as a fixed weight, all relevance goes to
  the activation;
* an elementwise activation: relevance passes through unchanged (zennit's ``Pass``, as its
  composites treat activation modules);
* a LayerNorm or GroupNorm: relevance passes through unchanged (the identity rule AttnLRP,
  Achtibat et al. 2024, gives normalisation layers: centring and scaling redistribute nothing).

Outside the forward pass (zennit's rules compute in the backward pass with the same operations)
the mode changes nothing.
"""
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class _SumRule(torch.autograd.Function):
    """``a + b`` whose backward splits the relevance in proportion to each input's value."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a + b

    @staticmethod
    def backward(ctx, relevance):
        a, b = ctx.saved_tensors
        return _split(relevance, a, b)


def _split(relevance, a, b):
    """The relevance of ``a + b`` split in proportion to each input's magnitude: shares in [0, 1]
    that add up to 1, so the sum conserves and never flips a sign. (The plain z-rule, ``a / (a +
    b)``, gives shares far outside [0, 1] where the branches nearly cancel: an untrained RegNet-Y
    ended with -4.7 times the relevance that entered it.)"""
    a_size, b_size = a.abs(), b.abs()
    share = relevance / (a_size + b_size).clamp_min(1e-12)
    return (a_size * share).sum_to_size(a.shape), (b_size * share).sum_to_size(b.shape)


class _InPlaceSumRule(torch.autograd.Function):
    """``a += b`` (``a.add_(b)``) with :class:`_SumRule`'s backward; ``a`` is changed in place, as
    the caller's code expects."""

    @staticmethod
    def forward(ctx, a, b):
        a.add_(b)
        ctx.mark_dirty(a)
        ctx.save_for_backward(b, a)
        return a

    @staticmethod
    def backward(ctx, relevance):
        b, out = ctx.saved_tensors
        return _split(relevance, out - b, b)


class _GateRule(torch.autograd.Function):
    """``x * gate`` whose backward hands all relevance to ``x`` and none to the gate."""

    @staticmethod
    def forward(ctx, x, gate):
        ctx.gate_shape = gate.shape if torch.is_tensor(gate) else None
        return x * gate

    @staticmethod
    def backward(ctx, relevance):
        gate = None if ctx.gate_shape is None else relevance.new_zeros(ctx.gate_shape)
        return relevance, gate


class _PassRule(torch.autograd.Function):
    """An elementwise activation whose backward passes relevance through unchanged."""

    @staticmethod
    def forward(ctx, x, function, args, kwargs):
        # on a copy: an in-place variant (``nn.ReLU(inplace=True)``) must leave the input as the
        # layers below need it, and returns its result like the others
        return function(x.clone(), *args, **kwargs)

    @staticmethod
    def backward(ctx, relevance):
        return relevance, None, None, None


SUMS = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__}
IN_PLACE_SUMS = {torch.Tensor.add_, torch.Tensor.__iadd__}     # ``a += b`` arrives as ``add_``
PRODUCTS = {torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__}
NORMS = {F.layer_norm, F.group_norm}
GATES = {torch.sigmoid, torch.Tensor.sigmoid, F.hardsigmoid}   # their outputs gate: marked as such
ACTIVATIONS = {F.relu, torch.relu, torch.Tensor.relu, F.relu6, F.hardtanh, F.gelu, F.silu, F.hardswish,
               F.hardsigmoid, torch.sigmoid, torch.Tensor.sigmoid, F.elu, F.leaky_relu, F.mish,
               F.softplus, torch.tanh, torch.Tensor.tanh}


def _traced(x):
    return torch.is_tensor(x) and x.requires_grad


class LRPOperations(TorchFunctionMode):
    """Within the block, sums, gates and activations in forward passes follow LRP's rules."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.is_grad_enabled() and torch._C._current_autograd_node() is None:
            if func in SUMS | IN_PLACE_SUMS and len(args) == 2 and not kwargs:
                return _sum(func, *args)
            if func in PRODUCTS and len(args) == 2 and not kwargs:
                return _product(func, *args)
            if func in ACTIVATIONS | NORMS and args and _traced(args[0]):
                out = _PassRule.apply(args[0], func, args[1:], kwargs)
                if func in GATES:
                    out.lrp_gate = True
                return out
        return func(*args, **kwargs)


def _sum(func, a, b):
    if not (_traced(a) and _traced(b)):
        return func(a, b)
    if func in IN_PLACE_SUMS:
        fits = a.shape == torch.broadcast_shapes(a.shape, b.shape)
        return _InPlaceSumRule.apply(a, b) if fits else func(a, b)
    return _SumRule.apply(a, b)


def _product(func, a, b):
    gated, gate = _gated_and_gate(a, b)
    return func(a, b) if gated is None else _GateRule.apply(gated, gate)


def _gated_and_gate(a, b):
    """(what is gated, the gate) of ``a * b``, or (None, None) for a product of two activations of
    the same size (attention-like; no rule of ours). The gate is a sigmoid's output where one is (a
    squeeze-excitation gate on a 1x1 map is as large as what it gates), else the smaller operand or
    a constant."""
    for x, y in ((a, b), (b, a)):
        if _traced(x) and getattr(y, "lrp_gate", False) and _fits(x, y):
            return x, y
    a_larger = torch.is_tensor(a) and (not torch.is_tensor(b) or a.numel() >= b.numel())
    big, small = (a, b) if a_larger else (b, a)
    if not _traced(big) or not _fits(big, small) or (_traced(small) and small.numel() == big.numel()):
        return None, None
    return big, small


def _fits(x, y):
    """Whether ``x * y`` has ``x``'s shape."""
    return not torch.is_tensor(y) or x.shape == torch.broadcast_shapes(x.shape, y.shape)
