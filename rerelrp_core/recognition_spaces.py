"""The feature spaces class Gaussians are taken in: a space must never change once a task's
statistics are in it, or they would go stale.

- :class:`InputSpace` (the default): the input itself, averaged over a grid of cells per channel.
  It depends on no network and on no task, so it is the same space whatever the class order (the
  first task's subnetwork was good on the order it was chosen on and up to 6 points worse on others:
  bench/README.md, "Class orders").
- :class:`SubnetworkSpace`: every unit's activation in subnetwork 0, frozen since task 0 (the
  default before run format 9).

Both are raised to ``power`` (signed, so inputs normalised below 0 keep their sign) and, when wider
than ``width``, projected onto ``width`` fixed random orthonormal directions (made from a constant
seed, so nothing is stored), which bounds what a class keeps.
"""
import torch
import torch.nn.functional as F

from .compact import CompactSubnetwork
from .models import evaluating, inference_batch, mask_rows
from .relevance import recording

PROJECTION_SEED = 0      # the random directions are the same in every run: nothing to store
SPACES = ("input", "subnetwork")


def make_space(config):
    """The space a RecognitionConfig names."""
    return InputSpace(config) if config.space == "input" else SubnetworkSpace(config)


def projection(width, directions):
    """(width, directions) orthonormal random directions, the same for every run; None (no
    projection) when ``directions`` is 0 or the space is not wider."""
    if not directions or width <= directions:
        return None
    draw = torch.Generator().manual_seed(PROJECTION_SEED)
    return torch.linalg.qr(torch.randn(width, directions, generator=draw, dtype=torch.float64))[0]


def _finished(values, power, project):
    """``values`` raised to ``power`` with their sign kept, then projected (None: as they are)."""
    values = values.sign() * values.abs() ** power
    return values if project is None else values @ project


class InputSpace:
    """Each input channel averaged over an ``input_grid`` x ``input_grid`` grid of cells (an image
    no larger is taken pixel by pixel)."""
    description = "the input image itself, averaged over a grid of cells"

    def __init__(self, config):
        self.config = config
        self._project = {}      # input width -> projection

    def features(self, learner, x):
        values = self.cells(x.cpu()).double()
        width = values.shape[1]
        if width not in self._project:
            self._project[width] = projection(width, self.config.width)
        return _finished(values, self.config.power, self._project[width])

    def cells(self, x):
        grid = self.config.input_grid
        if x.shape[2] > grid or x.shape[3] > grid:
            x = F.adaptive_avg_pool2d(x.float(), (min(grid, x.shape[2]), min(grid, x.shape[3])))
        return x.flatten(1)

    def width(self, learner):
        """The width of the space for ``learner``'s inputs."""
        width = self.cells(torch.zeros(1, *learner.model.input_shape)).shape[1]
        return width if width <= self.config.width or not self.config.width else self.config.width


class SubnetworkSpace:
    """Every unit's activation in subnetwork 0 after its ReLU, conv maps averaged over a grid of
    cells (``first_grid`` for the first conv layer, whose fine detail tells similar classes apart,
    ``grid`` for the others); the units subnetwork 0 pruned are left out."""
    description = "the activations of task 0's subnetwork (frozen since task 0)"

    def __init__(self, config):
        self.config = config
        self._space = None     # (grids, columns, projection), made once subnetwork 0 exists
        self._compact = None   # subnetwork 0 as a network of its own units (False: not possible)

    def parts(self, learner):
        if self._space is None:
            grids = layer_grids(learner.model, self.config.grid, self.config.first_grid)
            columns = space_columns(learner.model, learner.ownership.task_masks[0], grids)
            self._space = grids, columns, projection(int(columns.sum()), self.config.width)
        return self._space

    def features(self, learner, x):
        """Where the architecture allows, subnetwork 0 runs as a network of its own units only
        (:mod:`~rerelrp_core.compact`), a fraction of a masked pass."""
        grids, columns, project = self.parts(learner)
        if self._compact is None:
            self._compact = CompactSubnetwork.of(learner.model, learner.ownership.task_masks[0]) or False
        if self._compact:
            values = torch.cat([_pooled_layers(batch, grids) for batch in self._compact.batches(x)]).double()
        else:
            values = unit_activations(learner.model, learner.task_masks(0), x, grids=grids)[:, columns]
        return _finished(values.clamp_min(0), self.config.power, project)

    def width(self, learner):
        _, columns, project = self.parts(learner)
        return int(columns.sum()) if project is None else project.shape[1]


def layer_grids(model, grid=2, first_grid=None):
    """Per unit layer, the side of the grid its maps are averaged over (None: a vector or a token
    sequence per image)."""
    grids, first = [], True
    for layer in model.unit_layers:
        if layer.map_dims == 4:
            grids.append(first_grid if first and first_grid else grid)
            first = False
        else:
            grids.append(None)
    return grids


@torch.no_grad()
def unit_activations(model, masks, x, batch_size=None, grids=None):
    """Every unit's activation of ``x`` in the subnetwork ``masks``, all unit layers concatenated:
    after a ReLU, conv maps averaged over a g x g grid (g² values per channel; ``grids`` gives g
    per layer, by default :func:`layer_grids`)."""
    grids = grids or layer_grids(model)
    device = next(model.parameters()).device
    batch_size = batch_size or inference_batch(device)
    out = []
    with evaluating(model), recording(model) as records:
        for begin in range(0, len(x), batch_size):
            records.clear()     # one forward's outputs, in unit-layer order
            with model.subnetwork(mask_rows(masks, begin, begin + batch_size, device)):
                model(x[begin:begin + batch_size].to(device))
            out.append(_pooled_layers(records, grids))
    return torch.cat(out).double()


def _pooled_layers(activations, grids):
    """One row per input: every layer's activations after a ReLU, conv maps averaged over their
    layer's grid, concatenated."""
    return torch.cat([_pooled(activation, grid) for activation, grid in zip(activations, grids)], 1)


def _pooled(activation, grid):
    activation = activation.relu()
    if activation.dim() == 4:
        activation = F.adaptive_avg_pool2d(activation, grid)
    elif activation.dim() == 3:         # (N, units, tokens): one value per unit, the tokens' mean
        activation = activation.mean(2)
    return activation.flatten(1)


def space_columns(model, keep, grids=None):
    """The columns of :func:`unit_activations` that subnetwork ``keep`` (one bool mask per unit
    layer) can make non-zero: the rest are 0 for every input and are left out."""
    grids = grids or layer_grids(model)
    return torch.cat([kept.bool().cpu().repeat_interleave(g * g if g else 1)
                      for kept, g in zip(keep, grids)])
