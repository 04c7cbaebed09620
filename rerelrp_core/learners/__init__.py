"""Every continual-learning method, one file each, by name (the CLI's and the app's method picker)."""
from ..errors import UserError
from ..models import batched_logits
from .base import Learner, accuracy, preferred_device, resolve_device
from .ewc import EWC
from .icarl import ICaRL
from .lwf import LwF
from .reference import FineTune, Joint
from .replay import Replay
from .rerelrp import ReReLRP
from .training import Cancelled

LEARNERS = {cls.method: cls for cls in (ReReLRP, FineTune, Joint, EWC, LwF, ICaRL, Replay)}

__all__ = ["LEARNERS", "Cancelled", "Learner", "accuracy", "batched_logits", "make_learner",
           "preferred_device", "resolve_device"]


def make_learner(model, config, device=None):
    """The learner of ``config.method`` for ``model``."""
    if config.method not in LEARNERS:
        raise UserError(f"Unknown method '{config.method}'. Choose one of: {', '.join(LEARNERS)}.")
    return LEARNERS[config.method](model, config, device)
