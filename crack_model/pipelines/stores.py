"""The store a workflow step runs on: opened once by its caller (a DAG task, the CLI, the ops view), then passed on.

Every step takes ``StoreLike``: an open store or a URI. A caller that holds credentials (the
Airflow hook builds a boto3 session from a connection) opens the store with them; the step then
lends that session to everything its deeper layers open by URI (holdout images, model folders,
drift references), so no credential ever goes through ``os.environ``. Steps raise
``CrackModelError`` (or a subclass) for anything a caller should report rather than retry blindly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crack_model.core.errors import CrackModelError, RuntimeChoiceError
from crack_model.core.object_keys import ObjectStore
from crack_model.core.s3_store import S3Store
from crack_model.core.storage import lend_s3_session, open_store, refuse_an_empty_store

StoreLike = ObjectStore | str | os.PathLike[str]

__all__ = [
    "CrackModelError",
    "ObjectStore",
    "RuntimeChoiceError",
    "StoreLike",
    "open_run_store",
    "refuse_an_empty_store",
    "step_store",
]


def open_run_store(uri: str, *, session: Any = None, endpoint_url: str | None = None) -> ObjectStore:
    """Open a run's store; for ``s3://``, with this boto3 session and endpoint (None: the AWS environment's)."""
    if uri.startswith("s3://"):
        return open_store(uri, session=session, endpoint_url=endpoint_url)
    return open_store(uri)


@contextmanager
def step_store(store: StoreLike) -> Iterator[ObjectStore]:
    """Open ``store`` for one step; an S3 store's session and endpoint cover every ``s3://`` URI opened meanwhile."""
    opened = open_store(store)
    if isinstance(opened, S3Store) and (opened.session is not None or opened.endpoint_url):
        with lend_s3_session(opened.session, opened.endpoint_url):
            yield opened
    else:
        yield opened
