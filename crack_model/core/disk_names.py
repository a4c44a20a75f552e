"""How the local store names things on disk: a key segment too long for the file system is kept under a
hashed name with the original in a side file, and a name that is not a usable key segment (not UTF-8, a
decomposed twin) is shown with the reason the store cannot serve it."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Set
from contextlib import suppress
from pathlib import Path, PurePosixPath

from crack_model.core.object_keys import LONG_NAME_MARKER, TEMP_MARKER, printable_key

# O_NONBLOCK: opening a named pipe someone put among the uploads must not hang the batch.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_HASHED_NAME = re.compile(r"~([0-9a-f]{16})(\.[^.]*)?$")
# The store's own files, never listed: a write's temporary file, a lock and a long name's side file. Only
# these exact shapes: an upload merely named like one (".tmp-scan.jpg") is listed like any other.
OWN_FILE = re.compile(
    rf"{re.escape(TEMP_MARKER)}(?:[0-9a-f]{{32}}|lock-[0-9a-f]{{16}})|{re.escape(LONG_NAME_MARKER)}[0-9a-f]{{16}}"
)
_KEPT_BYTES, _MAX_SUFFIX_BYTES = 100, 16  # of a long name: its start and extension, kept beside its hash
_NOT_UTF8 = "the name is not valid UTF-8 (written in another encoding?); rename it with a UTF-8 name"
_TWIN = "a file with the same name in composed Unicode (NFC) form is beside it and owns the key; rename one of them"


def digest(segment: str) -> str:
    return hashlib.sha256(segment.encode("utf-8")).hexdigest()[:16]


def disk_name(segment: str, name_max: int) -> str:
    """The on-disk name of one key segment: itself, or a hashed name if too long for the file system."""
    if len(segment.encode("utf-8")) <= name_max:
        return segment
    suffix = PurePosixPath(segment).suffix
    suffix = suffix if len(suffix.encode("utf-8")) <= _MAX_SUFFIX_BYTES else ""
    kept = segment[: len(segment) - len(suffix)].encode("utf-8")[:_KEPT_BYTES].decode("utf-8", "ignore")
    return f"{kept}~{digest(segment)}{suffix}"


def shown_names(folder: int, names: Iterable[str], name_max: int) -> dict[str, tuple[str, str | None]]:
    """Each on-disk name in an open folder (the store's own files left out): its key segment, and why the
    store cannot serve it (None: it can).

    A name that is not UTF-8 is shown with ``\\xNN`` escapes, plus a suffix while that reads like another
    name, real or shown: two files must not share a key. Byte order makes every listing agree.
    """
    taken = set(names)  # the side files of long names included: they are read below
    shown: dict[str, tuple[str, str | None]] = {}
    for name in sorted((name for name in taken if not OWN_FILE.fullmatch(name)), key=os.fsencode):
        if (printable := printable_key(name)) != name:  # not UTF-8: bytes shown as \xNN escapes
            while printable in taken:
                printable += " (not UTF-8)"
            taken.add(printable)
            shown[name] = (printable, _NOT_UTF8)
        else:
            shown[name] = _shown_utf8_name(folder, name, taken, name_max)
    return shown


def _shown_utf8_name(folder: int, name: str, names: Set[str], name_max: int) -> tuple[str, str | None]:
    match = _HASHED_NAME.search(name)
    if match and f"{LONG_NAME_MARKER}{match[1]}" in names:
        original = read_small(folder, f"{LONG_NAME_MARKER}{match[1]}")
        if original and "/" not in original and disk_name(original, name_max) == name:
            return original, None
    composed = unicodedata.normalize("NFC", name)
    return name, (_TWIN if composed != name and composed in names else None)


def read_small(folder: int, name: str) -> str | None:
    """A short UTF-8 text file in an open folder (never through a link); None if missing or unreadable."""
    try:
        with os.fdopen(os.open(name, READ_FLAGS, dir_fd=folder), "rb") as handle:
            return handle.read(4096).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def name_max(root: Path) -> int:
    """The longest file name, in bytes, the file system under ``root`` takes (255 on most)."""
    for folder in (root, *root.parents):
        with suppress(OSError, ValueError):
            return min(255, os.pathconf(folder, "PC_NAME_MAX"))
    return 255
