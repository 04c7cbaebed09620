"""Unpacking a user's zip of images (one folder per class) without trusting it.

Refused: absolute paths, '..' components, symlinks and other special files, nested archives, more
than ``MAX_FILES`` members, more than ``MAX_TOTAL_BYTES`` uncompressed (checked while reading, not
only from the headers a zip bomb can lie in), and members that are not images.
"""
import stat
import zipfile
from io import BytesIO
from pathlib import Path, PurePosixPath

from .data import IMAGE_SUFFIXES
from .errors import UserError

MAX_FILES = 20_000
MAX_TOTAL_BYTES = 300 * 1024 * 1024
ARCHIVE_SUFFIXES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"}
IGNORED = ("__MACOSX/", ".DS_Store", "Thumbs.db")


def extract_image_zip(data, target):
    """Unpack zip ``data`` (bytes) into the new folder ``target`` and return the folder that holds
    the class sub-folders (a single top-level folder is looked through)."""
    try:
        archive = zipfile.ZipFile(BytesIO(data))
    except zipfile.BadZipFile:
        raise UserError("The upload is not a valid zip archive.") from None
    members = [m for m in archive.infolist() if not m.is_dir() and not any(i in m.filename for i in IGNORED)]
    if len(members) > MAX_FILES:
        raise UserError(f"The archive has {len(members):,} files; at most {MAX_FILES:,} are accepted.")
    if not members:
        raise UserError("The archive is empty.")
    for member in members:
        _check_member(member)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=False)
    total = 0
    for member in members:
        destination = target.joinpath(*PurePosixPath(member.filename).parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as source, open(destination, "wb") as sink:
            while chunk := source.read(1 << 20):
                total += len(chunk)
                if total > MAX_TOTAL_BYTES:
                    raise UserError(f"The archive unpacks to more than {MAX_TOTAL_BYTES // 2**20} MB; "
                                    "it is refused (possible zip bomb).")
                sink.write(chunk)
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() and _has_subfolders(entries[0]) else target


def _check_member(member):
    path = PurePosixPath(member.filename.replace("\\", "/"))
    if path.is_absolute() or member.filename.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        raise UserError(f"The archive member {member.filename!r} has an absolute path; it is refused.")
    if ".." in path.parts:
        raise UserError(f"The archive member {member.filename!r} points outside the archive ('..'); "
                        "it is refused.")
    kind = stat.S_IFMT(member.external_attr >> 16)     # 0 when the zip tool stored no file type
    if kind and kind != stat.S_IFREG:
        raise UserError(f"The archive member {member.filename!r} is a link or special file; it is refused.")
    suffix = path.suffix.lower()
    if suffix in ARCHIVE_SUFFIXES:
        raise UserError(f"The archive member {member.filename!r} is itself an archive; "
                        "nested archives are refused.")
    if suffix not in IMAGE_SUFFIXES:
        raise UserError(f"The archive member {member.filename!r} is not an image "
                        f"(accepted: {', '.join(sorted(IMAGE_SUFFIXES))}).")


def _has_subfolders(folder):
    return any(p.is_dir() for p in folder.iterdir())
