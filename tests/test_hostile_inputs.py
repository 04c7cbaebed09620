"""Hostile and unusual inputs: every one gets a specific message and nothing else breaks."""
import io
import stat
import struct
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from rerelrp_core.archives import MAX_TOTAL_BYTES, extract_image_zip
from rerelrp_core.data import load_image_folder
from rerelrp_core.errors import UserError
from rerelrp_core.images import MAX_PIXELS, ImageError, load_image, open_image


def encode(image, fmt="PNG", **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def png_header_only(width, height):
    """A tiny PNG that claims to be width x height (a decompression-bomb header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


GREY = Image.fromarray(np.tile(np.arange(0, 250, 10, dtype=np.uint8), (20, 1)))
NOISE = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"GIF89a" + b"\0" * 5, "not an image"),
    (b"hello, I am text pretending to be a PNG", "not an image"),
    (b"MZ\x90\x00" + b"\0" * 200, "not an image"),                         # a Windows executable
    (b"%PDF-1.4\n" + b"0" * 100, "not an image"),
    (encode(NOISE)[:2000], "truncated or corrupt"),
    (encode(NOISE, "JPEG")[:1000], "truncated or corrupt"),
    (png_header_only(20_000, 20_000), "too large"),                         # 400 megapixels claimed
])
def test_bad_image_bytes(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data, size=28, channels=1)


@pytest.mark.parametrize("image, fmt, kwargs", [
    (GREY.convert("CMYK"), "JPEG", {}),
    (GREY.convert("P"), "PNG", {}),
    (GREY.convert("RGBA"), "PNG", {}),
    (GREY.convert("LA"), "PNG", {}),
    (Image.fromarray((np.arange(400, dtype=np.uint16).reshape(20, 20) * 150)), "PNG", {}),   # 16-bit
    (Image.fromarray(np.linspace(-3, 7, 400, dtype=np.float32).reshape(20, 20)), "TIFF", {}),  # float
    (GREY.convert("RGB"), "WEBP", {}),
    (GREY.convert("RGB"), "BMP", {}),
    (GREY.convert("1"), "PNG", {}),
])
def test_unusual_but_valid_images(image, fmt, kwargs):
    x = load_image(encode(image, fmt, **kwargs), size=28, channels=1)
    assert x.shape == (1, 28, 28) and torch.isfinite(x).all() and 0 <= float(x.min()) <= float(x.max()) <= 1


def test_animated_gif_uses_its_first_frame():
    frames = [Image.new("L", (16, 16), 0), Image.new("L", (16, 16), 255)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert float(load_image(data, size=16, channels=1).max()) == 0.0


def test_exif_rotation_is_applied():
    wide = Image.new("L", (40, 20), 0)
    wide.paste(255, (0, 0, 10, 20))                                     # bright band on the left
    exif = Image.Exif()
    exif[0x0112] = 6                                                     # "rotate 90° clockwise"
    image = open_image(encode(wide, "JPEG", exif=exif.tobytes()))
    assert image.size == (20, 40)


def test_huge_but_allowed_image_is_resized():
    big = Image.new("L", (4000, 3000), 0)
    assert 4000 * 3000 < MAX_PIXELS
    assert load_image(encode(big), size=28, channels=3).shape == (3, 28, 28)


def make_zip(entries):
    """entries: (name, bytes, unix mode or None)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


PNG = encode(GREY)


def good_entries(classes=("cat", "dog"), per_class=3):
    return [(f"{c}/{i}.png", PNG, None) for c in classes for i in range(per_class)]


def test_good_zip_unpacks_and_loads(tmp_path):
    folder = extract_image_zip(make_zip([("pets/" + n, d, m) for n, d, m in good_entries()]), tmp_path / "x")
    dataset = load_image_folder(folder)
    assert dataset.class_names == ["cat", "dog"] and len(dataset.x_train) + len(dataset.x_test) == 6


@pytest.mark.parametrize("entries, message", [
    (good_entries() + [("../escape.png", PNG, None)], "outside the archive"),
    (good_entries() + [("cat/../../escape.png", PNG, None)], "outside the archive"),
    (good_entries() + [("/etc/passwd.png", PNG, None)], "absolute path"),
    (good_entries() + [("C:/windows/evil.png", PNG, None)], "absolute path"),
    (good_entries() + [("cat/link.png", b"/etc/passwd", stat.S_IFLNK | 0o777)], "link or special file"),
    (good_entries() + [("cat/inner.zip", make_zip(good_entries()), None)], "nested archives"),
    (good_entries() + [("cat/readme.txt", b"hello", None)], "not an image"),
    (good_entries() + [("cat/run.sh", b"#!/bin/sh", None)], "not an image"),
    ([], "empty"),
])
def test_hostile_zips(tmp_path, entries, message):
    with pytest.raises(UserError, match=message):
        extract_image_zip(make_zip(entries), tmp_path / "x")
    assert not (tmp_path / "escape.png").exists()


def test_zip_bomb_is_stopped_while_reading(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/bomb.png", b"\0" * (MAX_TOTAL_BYTES + 1))
        archive.writestr("b/x.png", PNG)
    assert len(buffer.getvalue()) < 2_000_000
    with pytest.raises(UserError, match="zip bomb"):
        extract_image_zip(buffer.getvalue(), tmp_path / "x")


def test_not_a_zip(tmp_path):
    with pytest.raises(UserError, match="not a valid zip"):
        extract_image_zip(b"PK\x03\x04 but not really", tmp_path / "x")


def test_zip_with_too_few_images_per_class(tmp_path):
    folder = extract_image_zip(make_zip(good_entries(per_class=1)), tmp_path / "x")
    with pytest.raises(UserError, match="needs at least two"):
        load_image_folder(folder)
