"""The paper's colour benchmarks, read from the layouts their official sources unpack to.

Files are looked for in a data folder: ``--data-dir``, else ``$RERELRP_DATA``, else
``~/.cache/rerelrp/data``. Nothing here unpickles a file: CIFAR is read from its *binary* version
(fixed-size records), SVHN from MATLAB v5 files (``scipy.io.loadmat``, which only reads arrays),
MedMNIST from ``.npz`` with ``allow_pickle=False``, EMNIST from its idx files. Every malformed file
gets one sentence naming it and what is wrong.

Each set comes with the task split the paper uses (``PAPER_SPLITS``).
"""
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from scipy.io import loadmat
from scipy.io.matlab import MatReadError

from .data import ImageDataset, read_idx
from .errors import UserError

# classes per task in the paper's experiments (arXiv 2502.10789)
PAPER_SPLITS = {"cifar10": [2] * 5, "cifar100": [10] * 10, "svhn": [2] * 5, "emnist-letters": [2] * 13,
                "pathmnist": [3, 2, 2, 2], "bloodmnist": [2] * 4, "tiny-imagenet": [40] * 5}

def default_split(dataset, n_tasks=None, classes_per_task=None):
    """(n_tasks, classes_per_task) when the user gave ``n_tasks`` or not: the paper's split for its
    data sets, else 5 even tasks; what the user gave wins."""
    if n_tasks is not None:
        return n_tasks, classes_per_task
    sizes = classes_per_task or PAPER_SPLITS.get(dataset)
    return (len(sizes), sizes) if sizes else (5, None)


PATHMNIST_CLASSES = ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                     "normal colon mucosa", "cancer-associated stroma",
                     "colorectal adenocarcinoma epithelium"]
BLOODMNIST_CLASSES = ["basophil", "eosinophil", "erythroblast", "immature granulocytes", "lymphocyte",
                      "monocyte", "neutrophil", "platelet"]


def data_dir(folder=None):
    """Where data sets are looked for: ``folder``, else ``$RERELRP_DATA``, else ~/.cache/rerelrp/data."""
    if folder is not None:
        return Path(folder)
    return Path(os.environ.get("RERELRP_DATA") or Path.home() / ".cache" / "rerelrp" / "data")


def _missing(name, folder, what):
    return UserError(f"The {name} data set was not found in {folder}: put {what} there, pass --download to "
                     "fetch it, or --data-dir to look elsewhere.")


def _images(array):
    """(N, H, W, C) uint8 -> (N, C, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0)


def _dataset(name, x_train, y_train, x_test, y_test, class_names):
    return ImageDataset(name, _images(x_train), torch.from_numpy(y_train.astype(np.int64)),
                        _images(x_test), torch.from_numpy(y_test.astype(np.int64)), class_names)


# -- CIFAR-10 / CIFAR-100, binary version ----------------------------------------------------------
def _cifar_records(path, label_bytes, label_index, n_classes):
    """Images (N, 32, 32, 3) and labels of one CIFAR binary file: records of ``label_bytes`` label
    bytes then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each 32 x 32 row by row)."""
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + 3072
    if raw.size == 0 or raw.size % record:
        raise UserError(f"{path} is not a CIFAR binary file: its size ({raw.size} bytes) is not a whole "
                        f"number of {record}-byte records (a truncated download?).")
    rows = raw.reshape(-1, record)
    labels = rows[:, label_index]
    if labels.max() >= n_classes:
        raise UserError(f"{path}: a label is {int(labels.max())}, but there are only {n_classes} classes.")
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _names(path, expected):
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != expected:
        raise UserError(f"{path} lists {len(names)} class names; expected {expected}.")
    return names


def load_cifar10(data_dir_=None):
    folder = data_dir(data_dir_) / "cifar-10-batches-bin"
    files = [folder / f"data_batch_{i}.bin" for i in range(1, 6)] + [folder / "test_batch.bin"]
    if not all(f.is_file() for f in files):
        raise _missing("CIFAR-10", folder.parent, "the binary version's cifar-10-batches-bin/ folder "
                       "(https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz)")
    parts = [_cifar_records(f, 1, 0, 10) for f in files]
    x_train, y_train = np.concatenate([p[0] for p in parts[:5]]), np.concatenate([p[1] for p in parts[:5]])
    names = _names(folder / "batches.meta.txt", 10) if (folder / "batches.meta.txt").is_file() else [
        str(i) for i in range(10)]
    return _dataset("cifar10", x_train, y_train, *parts[5], names)


def load_cifar100(data_dir_=None):
    folder = data_dir(data_dir_) / "cifar-100-binary"
    files = [folder / "train.bin", folder / "test.bin"]
    if not all(f.is_file() for f in files):
        raise _missing("CIFAR-100", folder.parent, "the binary version's cifar-100-binary/ folder "
                       "(https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz)")
    (x_train, y_train), (x_test, y_test) = (_cifar_records(f, 2, 1, 100) for f in files)   # fine labels
    names_file = folder / "fine_label_names.txt"
    names = _names(names_file, 100) if names_file.is_file() else [str(i) for i in range(100)]
    return _dataset("cifar100", x_train, y_train, x_test, y_test, names)


# -- SVHN ----------------------------------------------------------------------------------------
def _svhn_part(path):
    try:        # loadmat reads arrays only: a MATLAB file cannot run code
        mat = loadmat(path)
    except (MatReadError, ValueError, OSError, TypeError, IndexError, NotImplementedError) as error:
        raise UserError(f"{path} is not a readable MATLAB file ({type(error).__name__}: {error}).") from None
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise UserError(f"{path} must hold X as 32 x 32 x 3 x N uint8 images and y as N labels.")
    y = np.asarray(y).reshape(-1)
    if not len(y) or len(y) != x.shape[3] or y.min() < 1 or y.max() > 10:
        raise UserError(f"{path}: y must hold one label from 1 to 10 per image (10 stands for the digit 0).")
    return x.transpose(3, 0, 1, 2), y % 10


def load_svhn(data_dir_=None):
    root = data_dir(data_dir_)
    folder = next((f for f in (root / "svhn", root) if (f / "train_32x32.mat").is_file()), root / "svhn")
    files = [folder / "train_32x32.mat", folder / "test_32x32.mat"]
    if not all(f.is_file() for f in files):
        raise _missing("SVHN", folder, "train_32x32.mat and test_32x32.mat (torchvision's layout; "
                       "http://ufldl.stanford.edu/housenumbers/)")
    (x_train, y_train), (x_test, y_test) = (_svhn_part(f) for f in files)
    return _dataset("svhn", x_train, y_train, x_test, y_test, [str(d) for d in range(10)])


# -- MedMNIST ------------------------------------------------------------------------------------
def _medmnist(name, class_names, data_dir_):
    path = data_dir(data_dir_) / f"{name}.npz"
    if not path.is_file():
        raise _missing(name, path.parent, f"{name}.npz (as the medmnist package writes it)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            parts = {key: npz[key] for key in ("train_images", "train_labels", "test_images", "test_labels")}
    except KeyError as error:
        raise UserError(f"{path} lacks the array {error}.") from None
    except (ValueError, OSError, EOFError, TypeError, zipfile.BadZipFile) as error:   # TypeError: a bare .npy
        raise UserError(f"{path} is not a readable .npz file of plain arrays "
                        f"({type(error).__name__}: {error}).") from None
    for part in ("train", "test"):
        images, labels = parts[f"{part}_images"], parts[f"{part}_labels"].reshape(-1)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or len(labels) != len(images):
            raise UserError(f"{path}: {part}_images must be N x H x W x 3 uint8 with one label each; got "
                            f"{images.dtype} {images.shape} and {len(labels)} labels.")
        if not len(labels) or labels.min() < 0 or labels.max() >= len(class_names):
            raise UserError(f"{path}: {part}_labels must be a non-empty set of labels in "
                            f"0..{len(class_names) - 1}.")
    return _dataset(name, parts["train_images"], parts["train_labels"].reshape(-1), parts["test_images"],
                    parts["test_labels"].reshape(-1), class_names)


def load_pathmnist(data_dir_=None):
    return _medmnist("pathmnist", PATHMNIST_CLASSES, data_dir_)


def load_bloodmnist(data_dir_=None):
    return _medmnist("bloodmnist", BLOODMNIST_CLASSES, data_dir_)


# -- EMNIST letters ------------------------------------------------------------------------------
def load_emnist_letters(data_dir_=None):
    folder = data_dir(data_dir_) / "EMNIST" / "raw"
    found = {}
    for part in ("train", "test"):
        for kind, dims in (("images", 3), ("labels", 1)):
            stem = f"emnist-letters-{part}-{kind}-idx{dims}-ubyte"
            path = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
            if path is None:
                raise _missing("EMNIST letters", folder.parent.parent, "EMNIST/raw/ as torchvision's EMNIST "
                               "keeps it (emnist-letters-*-idx*-ubyte, plain or .gz)")
            found[(part, kind)] = read_idx(path)
            if found[(part, kind)].ndim != dims:
                raise UserError(f"{path} should hold {dims}-dimensional data.")
    parts = []
    for part in ("train", "test"):
        images, labels = found[(part, "images")], found[(part, "labels")]
        if not len(labels) or len(images) != len(labels) or labels.min() < 1 or labels.max() > 26:
            raise UserError(f"EMNIST letters {part}: labels must be 1..26, one per image.")
        # EMNIST stores each image transposed; letters are labelled 1 (a) to 26 (z)
        parts += [images.transpose(0, 2, 1)[..., None], labels - 1]
    return _dataset("emnist-letters", *parts, [chr(ord("a") + i) for i in range(26)])


# -- Tiny-ImageNet ------------------------------------------------------------------------------
def _jpeg(path):
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable image ({error}).") from None


def load_tiny_imagenet(data_dir_=None):
    """``tiny-imagenet-200/`` as it unpacks: ``wnids.txt``, ``train/<wnid>/images/*.JPEG`` and
    ``val/images`` labelled by ``val/val_annotations.txt`` (the official validation set is the test
    split; the test set has no labels). 100,000 + 10,000 images of 64 x 64: about 5 GB as floats."""
    folder = data_dir(data_dir_) / "tiny-imagenet-200"
    wnids_file, annotations = folder / "wnids.txt", folder / "val" / "val_annotations.txt"
    if not wnids_file.is_file() or not annotations.is_file():
        raise _missing("Tiny-ImageNet", folder.parent, "the extracted tiny-imagenet-200/ folder "
                       "(http://cs231n.stanford.edu/tiny-imagenet-200.zip)")
    wnids = [w.strip() for w in wnids_file.read_text().splitlines() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    x_train, y_train = [], []
    for wnid in wnids:
        files = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not files:
            raise UserError(f"{folder / 'train' / wnid / 'images'} holds no .JPEG image.")
        x_train += [_jpeg(f) for f in files]
        y_train += [index[wnid]] * len(files)
    x_test, y_test = [], []
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise UserError(f"{annotations}, line {number}: expected 'file<TAB>wnid…' with a wnid of "
                            "wnids.txt.")
        x_test.append(_jpeg(folder / "val" / "images" / fields[0]))
        y_test.append(index[fields[1]])
    words = folder / "words.txt"
    lines = words.read_text().splitlines() if words.is_file() else []
    names = dict(line.split("\t", 1) for line in lines if "\t" in line)
    return _dataset("tiny-imagenet", np.stack(x_train), np.array(y_train), np.stack(x_test), np.array(y_test),
                    [names.get(w, w).split(",")[0].strip() for w in wnids])


# one file whose presence says a set is in the data folder (its loader checks the rest)
MARKERS = {"cifar10": ["cifar-10-batches-bin/test_batch.bin"], "cifar100": ["cifar-100-binary/test.bin"],
           "svhn": ["svhn/test_32x32.mat", "test_32x32.mat"], "pathmnist": ["pathmnist.npz"],
           "bloodmnist": ["bloodmnist.npz"],
           "tiny-imagenet": ["tiny-imagenet-200/wnids.txt"],
           "emnist-letters": ["EMNIST/raw/emnist-letters-test-labels-idx1-ubyte",
                              "EMNIST/raw/emnist-letters-test-labels-idx1-ubyte.gz"]}


def present(name, folder=None):
    """Whether colour set ``name`` seems to be in the data folder (without reading it)."""
    return any((data_dir(folder) / marker).is_file() for marker in MARKERS[name])


# official archives and their published MD5 checksums (torchvision checks them while downloading)
ARCHIVES = {"cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                        "c32a1d4ab5d03f1284b67883e8d87530"),
            "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                         "03b5dce01913d631647c71ecec9e9cb8"),
            "tiny-imagenet": ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                              "90528d7ca1a48142e341f4ef8d21d0de")}


def download(name, folder=None):
    """Fetch set ``name`` into the data folder in the layout its loader reads: CIFAR and
    Tiny-ImageNet from their official archives (checksums verified), SVHN and EMNIST through
    torchvision's own classes (which verify theirs)."""
    import torchvision.datasets as sets
    from torchvision.datasets.utils import download_and_extract_archive
    root = data_dir(folder)
    root.mkdir(parents=True, exist_ok=True)
    try:
        if name in ARCHIVES:
            url, md5 = ARCHIVES[name]
            download_and_extract_archive(url, download_root=str(root), md5=md5, remove_finished=True)
        elif name == "svhn":
            for split in ("train", "test"):
                sets.SVHN(str(root / "svhn"), split=split, download=True)
        elif name == "emnist-letters":
            sets.EMNIST(str(root), split="letters", download=True)
        else:
            raise UserError(f"--download cannot fetch {name}: install the medmnist package and let it write "
                            f"{name}.npz into {root} (or copy the file there).")
    except (OSError, RuntimeError) as error:        # no network, a failed checksum, a full disk
        raise UserError(f"Downloading {name} into {root} failed ({type(error).__name__}: {error}).") from None


LOADERS = {"cifar10": load_cifar10, "cifar100": load_cifar100, "svhn": load_svhn,
           "emnist-letters": load_emnist_letters, "pathmnist": load_pathmnist, "bloodmnist": load_bloodmnist,
           "tiny-imagenet": load_tiny_imagenet}
