"""ReReLRP engine: class-incremental learning by LRP-guided pruning, freezing and task recognition.

The UI lives elsewhere: nothing in this package imports Streamlit.
"""
# zennit imports torchvision at import time: repair the CPU-wheel import before anything else.
from . import compat  # noqa: F401
from .errors import UserError

__all__ = ["UserError"]
