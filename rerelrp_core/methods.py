"""Every continual-learning method by name (the CLI's and the app's method picker)."""
from .baselines import EWC, ICaRL, LwF
from .errors import UserError
from .learner import FineTune, Joint
from .rerelrp import ReReLRP

LEARNERS = {cls.method: cls for cls in (ReReLRP, FineTune, Joint, EWC, LwF, ICaRL)}


def make_learner(model, config, device=None):
    """The learner of ``config.method`` for ``model``."""
    if config.method not in LEARNERS:
        raise UserError(f"Unknown method '{config.method}'. Choose one of: {', '.join(LEARNERS)}.")
    return LEARNERS[config.method](model, config, device)
