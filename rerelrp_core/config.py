"""How a run is trained: one dataclass, every option's allowed range next to it, one builder.

The CLI, the Train page and the Python API all build a :class:`TrainConfig` through
:func:`make_config` (or the constructor): either way every option is checked before any work
starts, and a bad value ends in one sentence that names the option, the value and what is allowed.
"""
import math
from dataclasses import asdict, dataclass, field, fields

from .errors import UserError
from .recognition import ACC_DROP, RECOGNITION_PRESETS, recognition_config


def _number(value, integer):
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return math.isfinite(value)


def at_least(low, integer=False):
    def check(value):
        return _number(value, integer) and value >= low
    check.rule = f"{'a whole number' if integer else 'a number'} of at least {low}"
    return check


def above(low):
    def check(value):
        return _number(value, False) and value > low
    check.rule = f"a number greater than {low}"
    return check


def between(low, high, include_low=True, include_high=True):
    def check(value):
        return (_number(value, False) and (value >= low if include_low else value > low)
                and (value <= high if include_high else value < high))
    left, right = "[" if include_low else "(", "]" if include_high else ")"
    check.rule = f"a number in {left}{low}, {high}{right}"
    return check


def optional(inner):
    def check(value):
        return value is None or inner(value)
    check.rule = f"{inner.rule} or None"
    return check


def one_of(*choices):
    def check(value):
        return value in choices
    check.rule = "one of " + ", ".join(map(str, choices))
    return check


def is_bool(value):
    return isinstance(value, bool)


def is_path(value):
    return value is None or (isinstance(value, str) and bool(value.strip()))


is_path.rule = "a file path or None"


def is_model(value):
    from .architectures import kind_of
    return kind_of(value) is not None


is_model.rule = "cnn, cnn-small, vgg11, resnet18, torchvision:NAME or PATH.py:FUNCTION"


is_bool.rule = "True or False"


def is_device(value):
    return isinstance(value, str) and (value in ("auto", "cpu", "cuda") or
                                       (value.startswith("cuda:") and value[5:].isdigit()))


is_device.rule = "auto, cpu, cuda or cuda:N"


def option(default, check, flag=None, **kwargs):
    """A dataclass field with its range check and its command-line flag (None: no flag)."""
    return field(default=default, metadata={"check": check, "flag": flag}, **kwargs)


@dataclass
class TrainConfig:
    """Everything that decides how a run is trained; stored in every run file.

    Parameters
    ----------
    method: a method of :mod:`rerelrp_core.learners` (``rerelrp``, ``finetune``, ``joint``, ``ewc``,
        ``lwf``, ``icarl``, ``replay``).
    arch: the model: a built-in network (``cnn``, ``cnn-small``, ``vgg11``, ``resnet18``),
        ``torchvision:NAME`` (a torchvision classification model) or ``PATH.py:FUNCTION`` (a
        function in a Python file that returns an ``nn.Module``); see :mod:`~rerelrp_core.architectures`.
    weights: a safetensors or ``.pt``/``.pth`` state dict the model starts from (None: random).
    input_size: resize images to this square size inside the model (None: as they are), for
        networks that need larger inputs than the data set's.
    epochs: maximum epochs per task (early stopping may end sooner).
    lr, momentum, weight_decay, batch_size: SGD settings.
    patience: epochs without a better validation accuracy before the learning rate is multiplied
        by ``lr_decay``; after ``max_decays`` such decays training stops.
    loss_scope: ``task`` (cross-entropy over the current task's head rows) or ``seen`` (over all
        classes seen so far).
    acc_drop: validation accuracy points a task may lose to pruning (None: the recognition kind's
        default, :data:`~rerelrp_core.recognition.ACC_DROP`: 0.25 with class Gaussians, the paper's 1
        with the relevance forests).
    ref_per_class: reference samples per class for relevance (research default 67).
    max_keep_fraction: optional cap on the share of all units one task may keep.
    max_claim_fraction: the largest share of each layer's still-free units one task may freeze
        (1 = no cap, as in the paper); below 1 no task leaves later tasks without free units.
    claim_cap_tolerance: validation accuracy points, beyond ``acc_drop``, the claim cap may cost a
        task before it gives way to "leave one free unit per layer" (0: it gives way at once; 1,
        chosen on validation images, bench/README.md "Class orders").
    reg_strength: baselines' regularisation weight (None = the method's default: EWC 50000, LwF 0.5).
    memory: iCaRL's and replay's image buffer, in images (2000, as in the paper's comparison).
    reinit_free: re-initialise units no task owns before each new task.
    augment: training augmentation: ``crop-flip`` (pad 4, random resized crop, horizontal flip),
        ``none``, or ``auto`` (crop-flip for CIFAR-10/100 and SVHN, as in the paper).
    keep_snapshots: keep a float16 copy of the weights after every task (for explanation drift).
    relevance_batch: samples per LRP pass.
    recognition: overrides of :class:`~rerelrp_core.recognition.RecognitionConfig` fields.
    seed: seed of initialisation, shuffling and sample draws.
    device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    """
    method: str = option("rerelrp", None, "--method")
    arch: str = option("cnn", is_model, "--model")
    weights: str = option(None, is_path, "--weights")
    input_size: int = option(None, optional(at_least(8, integer=True)), "--input-size")
    epochs: int = option(10, at_least(1, integer=True), "--epochs")
    batch_size: int = option(64, at_least(1, integer=True), "--batch-size")
    lr: float = option(0.05, above(0), "--lr")
    momentum: float = option(0.9, between(0, 1, include_high=False))
    weight_decay: float = option(5e-4, at_least(0))
    patience: int = option(2, at_least(1, integer=True))
    lr_decay: float = option(0.3, between(0, 1, include_low=False))
    max_decays: int = option(2, at_least(0, integer=True))
    loss_scope: str = option("task", one_of("task", "seen"), "--loss-scope")
    acc_drop: float = option(None, optional(between(0, 100)), "--acc-drop")
    ref_per_class: int = option(67, at_least(1, integer=True), "--ref-per-class")
    max_keep_fraction: float = option(None, optional(between(0, 1, include_low=False)),
                                     "--max-keep-fraction")
    max_claim_fraction: float = option(0.75, between(0, 1, include_low=False), "--max-claim-fraction")
    claim_cap_tolerance: float = option(1.0, between(0, 100), "--claim-cap-tolerance")
    reg_strength: float = option(None, optional(at_least(0)), "--reg-strength")
    memory: int = option(2000, at_least(1, integer=True), "--memory")
    reinit_free: bool = option(False, is_bool, "--reinit-free")
    augment: str = option("auto", one_of("auto", "none", "crop-flip"), "--augment")
    keep_snapshots: bool = option(False, is_bool)
    relevance_batch: int = option(256, at_least(1, integer=True))
    recognition: dict = field(default_factory=dict, metadata={"check": None, "flag": "--recognition"})
    seed: int = option(0, at_least(0, integer=True), "--seed")
    device: str = option("auto", is_device, "--device")

    def __post_init__(self):
        self.validate()
        # resolved here, so a saved run names the number it used (a later dataclasses.replace of
        # ``recognition`` keeps this number: pass acc_drop=None with it to resolve it again)
        if self.acc_drop is None:
            self.acc_drop = ACC_DROP[recognition_config(self.recognition).kind]

    def validate(self):
        """Raise a UserError naming the first option that is out of range."""
        from .learners import LEARNERS
        checks = {"method": one_of(*LEARNERS)}
        for f in fields(self):
            check = checks.get(f.name) or f.metadata.get("check")
            value = getattr(self, f.name)
            if check is not None and not check(value):
                raise UserError(f"Option {describe(f)} must be {check.rule}; got {value!r}.")
        if not isinstance(self.recognition, dict):
            raise UserError(f"Option recognition must be a dict of settings; got {self.recognition!r}.")
        recognition_config(self.recognition)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise UserError(f"Unknown training settings: {', '.join(sorted(unknown))}.")
        return cls(**values)

    def to_dict(self):
        return asdict(self)


def describe(f):
    """An option's name as the user knows it: ``lr (--lr)``."""
    return f"{f.name} ({f.metadata['flag']})" if f.metadata.get("flag") else f.name


def make_config(recognition="ours", **options):
    """The one place a TrainConfig is built from user options (CLI, Train page, scripts).

    ``recognition`` is a preset name (``ours`` or ``faithful``) or a dict of settings; every other
    keyword is a :class:`TrainConfig` field. Other options given as None take their default, so
    callers can pass whatever their user left empty (every option that may be None defaults to
    None)."""
    if isinstance(recognition, str):
        if recognition not in RECOGNITION_PRESETS:
            raise UserError(f"Option recognition (--recognition) must be one of "
                            f"{', '.join(RECOGNITION_PRESETS)}; got {recognition!r}.")
        recognition = dict(RECOGNITION_PRESETS[recognition])
    values = {k: v for k, v in options.items() if v is not None}
    return TrainConfig.from_dict({**values, "recognition": recognition})
