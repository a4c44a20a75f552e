"""A registration's claim on its version id, written before any of its files.

``register`` uploads a version's files, then writes ``version.json`` only if absent. Two registrations
of one version id (the same content hash within the same second, or one folder registered twice at
once) would both upload, and the loser's files would replace the winner's under a ``version.json`` that
describes the winner's: every night fetching it would then fail its hash check. The claim, written only
if absent and holding the files' hashes, stops the second registration before it uploads anything,
unless it is the same files again (a retried task, after a crash), which may go on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crack_model.core.object_keys import ObjectStore, PreconditionFailedError
from crack_model.registry.naming import VersionExistsError


def claim_version(store: ObjectStore, key: str, recorded: Mapping[str, Mapping[str, Any]]) -> None:
    """Claim ``key`` for these files (``{file name: {"sha256": ...}}``).

    Raises:
        VersionExistsError: the version id is claimed for other files.
    """
    files = {file_name: entry["sha256"] for file_name, entry in sorted(recorded.items())}
    claim = (json.dumps({"files": files}, indent=2) + "\n").encode("utf-8")
    try:
        store.write_if_match(key, claim, None)
    except PreconditionFailedError:
        if store.read(key) != claim:
            raise VersionExistsError(
                f"{store.url(key)} claims this version for other files: two models got the same version id. "
                "Train again for a new one; if that registration died, delete its claim file first"
            ) from None
