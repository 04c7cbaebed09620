"""The paper's data sets read from tiny files written here in their exact official formats, and
their malformed versions refused with one clear sentence."""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from rerelrp_core.cli import main
from rerelrp_core.colour_sets import PAPER_SPLITS
from rerelrp_core.data import SplitConfig, load_dataset, make_tasks
from rerelrp_core.errors import UserError
from rerelrp_core.runs import load_run

PER_CLASS = 3     # images per class in every tiny training file


def pixels(label, n_channels=3, size=32):
    """A recognisable image: channel c filled with 10 * (c + 1), pixel (0, 1) of channel 0 = the label."""
    image = np.zeros((size, size, n_channels), dtype=np.uint8)
    for c in range(n_channels):
        image[..., c] = 10 * (c + 1)
    image[0, 1, 0] = label
    return image


def cifar_records(labels, label_bytes=1):
    """CIFAR binary records: label byte(s), then the red, green and blue planes, row by row."""
    out = bytearray()
    for label in labels:
        out += bytes([label % 20, label] if label_bytes == 2 else [label])
        out += pixels(label).transpose(2, 0, 1).tobytes()
    return bytes(out)


@pytest.fixture()
def cifar10(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        per_class = PER_CLASS if i == 1 else 1
        (folder / f"data_batch_{i}.bin").write_bytes(cifar_records(list(range(10)) * per_class))
    (folder / "test_batch.bin").write_bytes(cifar_records(list(range(10)) * 2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return tmp_path


def test_cifar10_binary_layout(cifar10):
    data = load_dataset("cifar10", data_dir=cifar10)
    assert data.input_shape == (3, 32, 32) and data.class_names[9] == "truck"
    assert len(data.x_train) == 10 * (PER_CLASS + 4) and len(data.x_test) == 20
    first = data.x_train[3]                                  # a record of class 3
    assert int(data.y_train[3]) == 3 and round(float(first[0, 0, 1]) * 255) == 3
    assert [round(float(first[c, 5, 5]) * 255) for c in range(3)] == [10, 20, 30]   # R, G, B planes
    tasks = make_tasks(data, SplitConfig(n_tasks=5, classes_per_task=PAPER_SPLITS["cifar10"]))
    assert [t.classes for t in tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-1], "not a whole number of 3073-byte records"),
    (lambda raw: bytes([12]) + raw[1:], "a label is 12, but there are only 10 classes"),
])
def test_cifar_damaged_records_are_refused(cifar10, damage, message):
    path = cifar10 / "cifar-10-batches-bin" / "data_batch_2.bin"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match=message) as error:
        load_dataset("cifar10", data_dir=cifar10)
    assert "data_batch_2.bin" in str(error.value)


def test_cifar100_reads_the_fine_label(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(cifar_records(list(range(100)) * 2, label_bytes=2))
    (folder / "test.bin").write_bytes(cifar_records(list(range(100)), label_bytes=2))
    data = load_dataset("cifar100", data_dir=tmp_path)
    assert data.n_classes == 100 and data.y_train[:100].tolist() == list(range(100))
    assert round(float(data.x_train[57, 0, 0, 1]) * 255) == 57


def write_svhn(folder, labels, dtype=np.uint8):
    x = np.stack([pixels(label % 10) for label in labels], axis=3).astype(dtype)      # 32 x 32 x 3 x N
    return {"X": x, "y": np.array(labels, dtype=np.uint8).reshape(-1, 1)}


def test_svhn_mat_files_and_the_label_10(tmp_path):
    labels = [10, 1, 2, 3, 4, 5, 6, 7, 8, 9] * PER_CLASS
    savemat(tmp_path / "train_32x32.mat", write_svhn(tmp_path, labels))
    savemat(tmp_path / "test_32x32.mat", write_svhn(tmp_path, labels[:20]))
    data = load_dataset("svhn", data_dir=tmp_path)
    assert data.input_shape == (3, 32, 32) and data.y_train[:3].tolist() == [0, 1, 2]   # 10 is the digit 0
    assert round(float(data.x_train[1, 0, 0, 1]) * 255) == 1
    savemat(tmp_path / "test_32x32.mat", write_svhn(tmp_path, labels[:20], dtype=np.float64))
    with pytest.raises(UserError, match="test_32x32.mat must hold X as 32 x 32 x 3 x N uint8"):
        load_dataset("svhn", data_dir=tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, but cut short")
    with pytest.raises(UserError, match="test_32x32.mat is not a readable MATLAB file"):
        load_dataset("svhn", data_dir=tmp_path)


def write_medmnist(path, n_classes, images=None):
    labels = np.tile(np.arange(n_classes), PER_CLASS).reshape(-1, 1)
    images = np.stack([pixels(int(c), size=28) for c in labels[:, 0]]) if images is None else images
    np.savez(path, train_images=images, train_labels=labels, val_images=images, val_labels=labels,
             test_images=images, test_labels=labels)


def test_medmnist_npz(tmp_path):
    write_medmnist(tmp_path / "pathmnist.npz", 9)
    data = load_dataset("pathmnist", data_dir=tmp_path)
    assert data.input_shape == (3, 28, 28) and data.n_classes == 9 and data.class_names[0] == "adipose"
    tasks = make_tasks(data, SplitConfig(n_tasks=4, classes_per_task=PAPER_SPLITS["pathmnist"]))
    assert [t.n_classes for t in tasks] == [3, 2, 2, 2]
    write_medmnist(tmp_path / "bloodmnist.npz", 8, images=np.zeros((24, 28, 28, 3), dtype=np.float32))
    with pytest.raises(UserError, match="train_images must be N x H x W x 3 uint8"):
        load_dataset("bloodmnist", data_dir=tmp_path)
    np.savez(tmp_path / "bloodmnist.npz", train_images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UserError, match="bloodmnist.npz"):          # never unpickled
        load_dataset("bloodmnist", data_dir=tmp_path)
    whole = (tmp_path / "pathmnist.npz").read_bytes()
    (tmp_path / "bloodmnist.npz").write_bytes(whole[:len(whole) // 2])        # an interrupted download
    with pytest.raises(UserError, match="bloodmnist.npz is not a readable .npz file"):
        load_dataset("bloodmnist", data_dir=tmp_path)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "plain.npy").rename(tmp_path / "bloodmnist.npz")               # a bare array, renamed
    with pytest.raises(UserError, match="bloodmnist.npz is not a readable .npz file"):
        load_dataset("bloodmnist", data_dir=tmp_path)


def idx(array, dims):
    return bytes([0, 0, 8, dims]) + b"".join(n.to_bytes(4, "big") for n in array.shape) + array.tobytes()


def test_emnist_letters_as_torchvision_keeps_them(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    labels = np.tile(np.arange(1, 27, dtype=np.uint8), PER_CLASS)
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    images[:, 0, 5] = 255                                      # stored transposed: row 5, column 0 upright
    for part in ("train", "test"):
        (raw / f"emnist-letters-{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(images, 3)))
        (raw / f"emnist-letters-{part}-labels-idx1-ubyte").write_bytes(idx(labels, 1))
    data = load_dataset("emnist-letters", data_dir=tmp_path)
    assert data.input_shape == (1, 28, 28) and data.class_names[0] == "a"
    assert data.y_train[:2].tolist() == [0, 1]
    assert float(data.x_train[0, 0, 5, 0]) == 1.0
    (raw / "emnist-letters-test-labels-idx1-ubyte").write_bytes(idx(labels, 1)[:-3])
    with pytest.raises(UserError, match="truncated"):
        load_dataset("emnist-letters", data_dir=tmp_path)


@pytest.mark.parametrize("name, what", [("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100"), ("svhn", "SVHN"),
                                        ("pathmnist", "pathmnist"), ("emnist-letters", "EMNIST letters")])
def test_a_missing_data_set_is_one_sentence(tmp_path, name, what):
    with pytest.raises(UserError) as error:
        load_dataset(name, data_dir=tmp_path)
    message = str(error.value)
    assert what in message and str(tmp_path) in message and "--data-dir" in message and "\n" not in message


def test_train_on_cifar10_from_the_command_line_with_the_paper_split(cifar10, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "cifar10", "--data-dir", str(cifar10), "--model", "cnn-small",
                 "--epochs", "1", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    run = load_run(out, device="cpu")
    assert run.input_shape == [3, 32, 32] and run.split.n_tasks == 5 and run.tasks_done == 5


def test_the_train_page_offers_a_colour_set_that_is_present_and_trains_it(cifar10, tmp_path,
                                                                          monkeypatch):
    import time

    from streamlit.testing.v1 import AppTest

    import ui.state
    monkeypatch.setenv("RERELRP_DATA", str(cifar10))
    monkeypatch.setattr(ui.state, "RUNS_DIR", tmp_path / "runs")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.switch_page("views/train.py").run()
    data_set = next(s for s in at.selectbox if s.label == "Data set")
    assert "CIFAR-10 (32×32 colour)" in data_set.options
    assert not any("CIFAR-100" in option for option in data_set.options)      # not in the folder
    data_set.set_value("cifar10")
    [n for n in at.number_input if n.label == "Max epochs per task"][0].set_value(1)
    [t for t in at.text_input if t.label == "Run name"][0].set_value("colour")
    at.button[0].click().run()
    job = at.session_state["job"]
    deadline = time.time() + 120
    while job.active and time.time() < deadline:
        time.sleep(0.1)
    assert job.state == "finished", job.error
    assert job.run.input_shape == [3, 32, 32] and job.split.classes_per_task == PAPER_SPLITS["cifar10"]
    # every page works on the colour run (the image shown in colour: 3 channels)
    for page in ("explore", "masking", "forgetting"):
        other = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
        other.session_state["run_path"] = str(job.saved_to)
        other.switch_page(f"views/{page}.py").run()
        assert not other.exception and not other.error, (page, other.exception, other.error)


def test_tiny_imagenet_folder(tmp_path):
    from PIL import Image
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\n"
                                    "n01629819\tEuropean fire salamander\n")
    lines = []
    for k, wnid in enumerate(wnids):
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(PER_CLASS):
            Image.fromarray(pixels(k, size=64)).save(images / f"{wnid}_{i}.JPEG", quality=95)
        Image.fromarray(pixels(k, size=64)).save(root / "val" / "images" / f"val_{k}.JPEG", quality=95)
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    data = load_dataset("tiny-imagenet", data_dir=tmp_path)
    assert data.input_shape == (3, 64, 64) and data.class_names == ["goldfish", "European fire salamander"]
    assert data.y_train.tolist() == [0] * PER_CLASS + [1] * PER_CLASS and data.y_test.tolist() == [0, 1]
    assert abs(float(data.x_train[0, 1, 30, 30]) * 255 - 20) < 3          # green plane, through JPEG
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\n")
    with pytest.raises(UserError, match="line 1: expected"):
        load_dataset("tiny-imagenet", data_dir=tmp_path)
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "val" / "images" / "val_1.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="val_1.JPEG is not a readable image"):
        load_dataset("tiny-imagenet", data_dir=tmp_path)


def test_augmentation_is_on_for_cifar_by_default_and_reproducible(cifar10):
    from rerelrp_core.augment import augmentation
    from rerelrp_core.config import make_config
    from rerelrp_core.sequence import train_sequence
    data = load_dataset("cifar10", data_dir=cifar10)
    apply = augmentation("auto", "cifar10", data.input_shape)
    assert augmentation("auto", "mnist5k", (1, 28, 28)) is None
    assert augmentation("none", "cifar10", (3, 32, 32)) is None
    batch = data.x_train[:16]
    first, again = apply(batch, 7), apply(batch, 7)
    assert first.shape == batch.shape and torch.equal(first, again) and not torch.equal(first, batch)
    split = SplitConfig(n_tasks=5, classes_per_task=PAPER_SPLITS["cifar10"])

    def run(augment):
        config = make_config(arch="cnn-small", epochs=2, augment=augment, device="cpu")
        return train_sequence(data, split, config).learner.model.state_dict()["head.weight"]

    assert torch.equal(run("auto"), run("crop-flip")) and not torch.equal(run("auto"), run("none"))


def test_download_fetches_the_official_archive_once_then_loads_it(tmp_path, cifar10, monkeypatch):
    import urllib.error

    import torchvision.datasets.utils as utils
    calls = []

    def fake_download(url, download_root, md5=None, remove_finished=False):     # no network here
        calls.append((url, md5))
        shutil.copytree(cifar10 / "cifar-10-batches-bin", Path(download_root) / "cifar-10-batches-bin")

    monkeypatch.setattr(utils, "download_and_extract_archive", fake_download)
    target = tmp_path / "data"
    data = load_dataset("cifar10", data_dir=target, download=True)
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                      "c32a1d4ab5d03f1284b67883e8d87530")]
    assert data.n_classes == 10
    load_dataset("cifar10", data_dir=target, download=True)
    assert len(calls) == 1                                      # present: not fetched again

    def offline(url, download_root, md5=None, remove_finished=False):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(utils, "download_and_extract_archive", offline)
    with pytest.raises(UserError, match="Downloading cifar100 into .* failed .*no route to host"):
        load_dataset("cifar100", data_dir=target, download=True)
    with pytest.raises(UserError, match="install the medmnist package"):
        load_dataset("pathmnist", data_dir=target, download=True)
