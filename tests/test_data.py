"""Data sets from real files and the task splits cut from them."""
import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from rerelrp_core import data
from rerelrp_core.data import SplitConfig, load_dataset, load_image_folder, make_tasks
from rerelrp_core.errors import UserError


@pytest.fixture(scope="module")
def fashion():
    return data.load_fashion_mnist()


def test_fashion_mnist_from_debian_package(fashion):
    assert fashion.x_train.shape == (60000, 1, 28, 28) and fashion.x_test.shape == (10000, 1, 28, 28)
    assert (fashion.x_train.dtype == torch.float32
            and 0 <= float(fashion.x_train.min()) < float(fashion.x_train.max()) <= 1)
    assert torch.bincount(fashion.y_train).tolist() == [6000] * 10
    assert fashion.class_names[9] == "Ankle boot"


def test_split_fashion_mnist_five_tasks(fashion):
    tasks = make_tasks(fashion, SplitConfig(n_tasks=5))
    assert [t.classes for t in tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert [t.offset for t in tasks] == [0, 2, 4, 6, 8]
    for t in tasks:
        assert len(t.x_val) == 1200 and len(t.x_train) == 10800 and len(t.x_test) == 2000
        assert set(t.y_train.tolist()) == {0, 1}
    # validation images are not training images
    first = tasks[0]
    train_rows = {tuple(r.flatten()[::7].tolist()) for r in first.x_train[:3000]}
    assert not any(tuple(r.flatten()[::7].tolist()) in train_rows for r in first.x_val[:200])


def test_missing_fashion_mnist_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "fashion_mnist_dirs", lambda root=None: [tmp_path])
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist()


def test_truncated_idx_file(tmp_path):
    path = tmp_path / "bad-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + (100).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 50)
    with pytest.raises(UserError, match="truncated"):
        data.read_idx(path)


def test_mnist5k_fixed_split():
    mnist = load_dataset("mnist5k")
    assert mnist.x_train.shape == (4000, 1, 28, 28) and mnist.x_test.shape == (1000, 1, 28, 28)
    assert torch.bincount(mnist.y_test).tolist() == [100] * 10
    assert float(mnist.x_train.max()) == 1.0


def test_digits_then_fashion_as_twenty_classes(fashion):
    both = load_dataset("mnist5k-fashion")
    assert both.x_train.shape == (8000, 1, 28, 28) and both.x_test.shape == (2000, 1, 28, 28)
    assert torch.bincount(both.y_train).tolist() == [400] * 20
    assert both.class_names[:2] == ["0", "1"] and both.class_names[19] == "Ankle boot"
    # the fashion half is Fashion-MNIST's own first images of each class, relabelled 10-19
    first_boot = fashion.x_train[torch.nonzero(fashion.y_train == 9).flatten()[0]]
    assert torch.equal(both.x_train[torch.nonzero(both.y_train == 19).flatten()[0]], first_boot)
    tasks = make_tasks(both, SplitConfig(n_tasks=10))
    assert [t.classes for t in tasks][4:6] == [(8, 9), (10, 11)]


def test_digits_and_custom_class_order(digits):
    tasks = make_tasks(digits, SplitConfig(n_tasks=2, classes_per_task=[3, 2], class_order=[9, 8, 7, 1, 2]))
    assert tasks[0].classes == (9, 8, 7) and tasks[1].classes == (1, 2) and tasks[1].offset == 3
    assert tasks[0].class_names == ("9", "8", "7")


@pytest.mark.parametrize("split, message", [
    (SplitConfig(n_tasks=3), "cannot be split evenly"),
    (SplitConfig(n_tasks=2, classes_per_task=[1, 2]), "does not fit"),
    (SplitConfig(n_tasks=2, class_order=[0, 0, 1, 2]), "distinct class ids"),
    (SplitConfig(n_tasks=2, class_order=[0, 1, 2, 99]), "between 0 and 9"),
])
def test_bad_splits(digits, split, message):
    with pytest.raises(UserError, match=message):
        make_tasks(digits, split)


def write_folder(root, classes, per_class=4, size=(20, 30), mode="RGB"):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            array = np.full((size[1], size[0], 3), 40 * c + 10 * i, dtype=np.uint8)
            Image.fromarray(array).convert(mode).save(root / name / f"{i}.png")


def test_image_folder_loader(tmp_path):
    write_folder(tmp_path, ["cats", "dogs", "owls"], per_class=5)
    dataset = load_image_folder(tmp_path, size=16, channels=3)
    assert dataset.class_names == ["cats", "dogs", "owls"]
    assert dataset.x_train.shape[1:] == (3, 16, 16)
    assert len(dataset.x_train) + len(dataset.x_test) == 15
    assert torch.bincount(dataset.y_test).tolist() == [1, 1, 1]


@pytest.mark.parametrize("setup, message", [
    (lambda root: write_folder(root, ["only"]), "at least two class sub-folders"),
    (lambda root: (write_folder(root, ["a", "b"]), (root / "a" / "x.png").write_bytes(b"not an image")),
     "x.png"),
    (lambda root: (write_folder(root, ["a", "b"]), (root / "b" / "notes.txt").write_text("hi")),
     "not an image"),
    (lambda root: write_folder(root, ["a", "b"], per_class=1), "needs at least two"),
])
def test_bad_image_folders(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(UserError, match=message):
        load_image_folder(tmp_path)


def test_an_image_folder_read_in_colour_at_another_size_reopens_the_same_way(tmp_path):
    for name, colour in (("red", (200, 10, 10)), ("blue", (10, 10, 200))):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (50, 40), colour).save(tmp_path / name / f"{i}.png")
    colour_data = load_image_folder(tmp_path, size=32, channels=3)
    assert colour_data.input_shape == (3, 32, 32)
    assert colour_data.name == f"folder-32-rgb:{tmp_path.resolve()}"
    again = load_dataset(colour_data.name)            # what a run keeps and reopens
    assert torch.equal(again.x_train, colour_data.x_train)
    blue = again.x_train[again.y_train == 0][0]                  # class 0 is "blue" (sorted names)
    assert round(float(blue[2].max()) * 255) == 200 and round(float(blue[0].max()) * 255) == 10  # still blue
    grey = load_dataset(f"folder:{tmp_path}")
    assert grey.input_shape == (1, 28, 28) and grey.name == f"folder:{tmp_path.resolve()}"
