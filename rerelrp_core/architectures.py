"""Where a model comes from, named by one string (``TrainConfig.arch``, ``--model``):

* a built-in network: ``cnn``, ``cnn-small``, ``vgg11``, ``resnet18`` (:mod:`~rerelrp_core.models`);
* ``torchvision:NAME``: one of torchvision's classification models (``torchvision.models.list_models``),
  built without downloading anything (``--weights`` starts it from a file);
* ``PATH.py:FUNCTION``: a function in a Python file of the user's, called without arguments, that
  returns an ``nn.Module``. Running it runs the user's code: the command line and Python only.

Every one goes through :func:`~rerelrp_core.adapt.adapt`.
"""
import hashlib
import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from .errors import UserError

TORCHVISION = "torchvision:"
# torchvision models whose training-mode output is a tuple with auxiliary logits unless told otherwise
NO_AUX = {"googlenet", "inception_v3"}


def torchvision_names():
    """torchvision's classification models, by name."""
    from .compat import torchvision
    return sorted(torchvision.models.list_models(module=torchvision.models))


def kind_of(spec):
    """``builtin``, ``torchvision`` or ``file`` for a model string (no code is run)."""
    from .models import ARCHITECTURES
    if spec in ARCHITECTURES:
        return "builtin"
    if isinstance(spec, str) and spec.startswith(TORCHVISION):
        return "torchvision"
    if isinstance(spec, str) and ".py:" in spec:
        return "file"
    return None


def check_spec(spec):
    """Raise a UserError unless ``spec`` names a model this engine can build (files are checked
    for existence, not run)."""
    from .models import ARCHITECTURES
    kind = kind_of(spec)
    if kind == "torchvision" and spec[len(TORCHVISION):] not in torchvision_names():
        raise UserError(f"torchvision has no classification model '{spec[len(TORCHVISION):]}'; choose one of "
                        f"torchvision.models.list_models(), e.g. torchvision:resnet18.")
    if kind == "file":
        path, function = _file_parts(spec)
        if not path.is_file():
            raise UserError(f"Model file {path} does not exist (from --model {spec}).")
    if kind is None:
        raise UserError(f"Unknown model {spec!r}. Choose one of {', '.join(ARCHITECTURES)}, torchvision:NAME "
                        f"or PATH.py:FUNCTION.")


def _file_parts(spec):
    path, _, function = spec.rpartition(":")
    if not function.isidentifier() or not path.endswith(".py"):
        raise UserError(f"A model from a file is written PATH.py:FUNCTION; got {spec!r}.")
    return Path(path).expanduser(), function


def build_module(spec, input_shape=None, n_classes=None):
    """The plain ``nn.Module`` that ``spec`` names, untrained (a built-in network is made for
    ``input_shape`` and ``n_classes``)."""
    check_spec(spec)
    if kind_of(spec) == "builtin":
        from .models import ARCHITECTURES
        return ARCHITECTURES[spec](tuple(input_shape), n_classes)
    if kind_of(spec) == "torchvision":
        from .compat import torchvision
        name = spec[len(TORCHVISION):]
        options = {"aux_logits": False, "init_weights": True} if name in NO_AUX else {}
        return torchvision.models.get_model(name, weights=None, **options)
    return _from_file(spec)


def _from_file(spec):
    path, function = _file_parts(spec)
    name = f"rerelrp_user_model_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    try:
        loader = importlib.util.spec_from_file_location(name, path)
        code = importlib.util.module_from_spec(loader)
        sys.modules[name] = code       # dataclasses and pickling look their module up by name
        loader.loader.exec_module(code)
    except Exception as error:
        raise UserError(f"{path} could not be imported: {type(error).__name__}: {error}") from None
    make = getattr(code, function, None)
    if not callable(make):
        raise UserError(f"{path} has no function named {function!r}.")
    try:
        module = make()
    except Exception as error:
        raise UserError(f"{spec} raised {type(error).__name__}: {error}") from None
    if not isinstance(module, nn.Module):
        raise UserError(f"{spec} returned a {type(module).__name__}, not a torch.nn.Module.")
    return module


def source_digest(spec):
    """SHA-256 of the file a ``PATH.py:FUNCTION`` model comes from (None for the others), so a
    reopened run can say when the code changed."""
    if kind_of(spec) != "file":
        return None
    path, _ = _file_parts(spec)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def load_weights(module, file, skip=()):
    """Copy the tensors of ``file`` (safetensors, or a PyTorch state dict read with
    ``weights_only=True``) into ``module``. Tensors under the prefixes in ``skip`` (the classifier,
    which becomes the task heads) are left out; a tensor the module does not have, or one whose
    shape does not fit, is named with both shapes. Returns the number of tensors copied."""
    tensors = read_weights(file)
    own = module.state_dict()
    for key, value in tensors.items():
        if any(key == s or key.startswith(s + ".") for s in skip):
            continue
        if key not in own:
            raise UserError(f"{file}: tensor '{key}' has no place in the model (it has e.g. "
                            f"'{next(iter(own))}').")
        if tuple(own[key].shape) != tuple(value.shape):
            raise UserError(f"{file}: tensor '{key}' is shaped {tuple(value.shape)} but the model's is "
                            f"{tuple(own[key].shape)}.")
    kept = {k: v for k, v in tensors.items() if not any(k == s or k.startswith(s + ".") for s in skip)}
    missing = [k for k in own if k not in kept and not any(k == s or k.startswith(s + ".") for s in skip)]
    if missing:
        raise UserError(f"{file} lacks {len(missing)} of the model's tensors, e.g. '{missing[0]}'.")
    with torch.no_grad():
        for key, value in kept.items():
            own[key].copy_(value)
    return len(kept)


def read_weights(file):
    """A name -> tensor dict from a safetensors file or a ``.pt``/``.pth`` state dict; never unpickles
    code (``torch.load(weights_only=True)`` refuses anything but tensors and plain containers)."""
    path = Path(file)
    if not path.is_file():
        raise UserError(f"Weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise UserError(f"{path} is not a readable safetensors file ({error}).") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{path} is refused: it is not a plain PyTorch state dict of tensors (a file that "
                        f"holds code is never run; {type(error).__name__}).") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v)
                                              for k, v in state.items()):
        raise UserError(f"{path} does not hold a state dict (a mapping of names to tensors).")
    return state


def weights_digest(file):
    """SHA-256 of a weights file (recorded in the run)."""
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


def build_adapted(spec, input_shape, n_classes, weights=None, input_size=None):
    """Build ``spec``'s module, start it from ``weights`` when given, and adapt it."""
    from .adapt import adapt
    module = build_module(spec, input_shape, n_classes)
    net = adapt(module, tuple(input_shape), n_classes, arch=spec, input_size=input_size)
    if weights:    # the classifier's tensors are left out: it became the task heads
        load_weights(module, weights, skip=(net.classifier_path,))
    return net
