"""Whether a registered version's serving files (its card and runtime files) are still the files registered.

A rollback points every night at a version registered long ago: a file removed, cut short or replaced since would
fail each night's load (``model_uri.fetch_version`` checks each file's SHA-256) instead of the rollback. Sizes
alone passed a file replaced by another of the same size (an export written again, a copy of another version's),
so each file is read once and its SHA-256 compared with the one ``version.json`` records. On a folder store this
costs what the size check did (its size came from reading the file to hash it, ``LocalStore.head``); on S3 a GET
of each file instead of a HEAD (21 MB for a MobileNetV2 version with both exports).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from crack_model.core.errors import CrackModelError
from crack_model.core.model_card import CARD_NAME, RUNTIME_FILES
from crack_model.core.object_keys import ObjectNotFoundError, ObjectStore


def serving_file_problems(
    store: ObjectStore, files: Mapping[str, Mapping[str, Any]], key_of: Callable[[str], str]
) -> list[str]:
    """What is wrong with each serving file of ``files`` (``version.json``'s: file name -> size, sha256), each
    read from ``key_of(file name)`` once, one at a time; empty if they are all as registered."""
    broken = []
    for file_name in (CARD_NAME, *RUNTIME_FILES.values()):
        if file_name not in files:
            continue  # never registered (an export that was not approved): nothing will ask for it
        registered = files[file_name]
        try:
            data = store.read(key_of(file_name))
        except ObjectNotFoundError:
            broken.append(f"{file_name} is gone")
            continue
        except CrackModelError as error:  # a folder or a link where the file was: no load reads it either
            broken.append(f"{file_name} cannot be read ({error})")
            continue
        size, sha256 = registered.get("size"), registered.get("sha256")
        if size is not None and len(data) != size:
            broken.append(f"{file_name} has {len(data)} bytes, {size} when registered")
        elif sha256 and hashlib.sha256(data).hexdigest() != sha256:
            broken.append(f"{file_name} is not the file registered (its size, another SHA-256): replaced since")
    return broken
