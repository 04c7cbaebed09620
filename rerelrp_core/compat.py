"""Import torchvision safely next to a CPU-only torch wheel.

The PyPI torchvision 0.28.0 is a CUDA build; beside the CPU torch 2.13.0 wheel its compiled
operators cannot load and ``import torchvision`` fails with
``RuntimeError: operator torchvision::nms does not exist``. The models and transforms we use are
pure Python, so declaring the two missing operator schemas is enough for the import to succeed.
On a normal install the first import simply works and nothing here runs.
"""
import sys

import torch

_SCHEMA_LIBRARY = None  # must stay referenced, or the schemas are unregistered again


def import_torchvision():
    """Return the ``torchvision`` module, repairing the CPU-wheel import failure if it occurs."""
    global _SCHEMA_LIBRARY
    try:
        import torchvision
        return torchvision
    except RuntimeError as error:
        if "torchvision::nms does not exist" not in str(error):
            raise
    _SCHEMA_LIBRARY = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        _SCHEMA_LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torchvision
    return torchvision


torchvision = import_torchvision()
