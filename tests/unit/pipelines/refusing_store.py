"""A local store that answers some keys as S3 does when a bucket policy denies them or the store keeps failing."""

from __future__ import annotations

from pathlib import Path

from crack_model.core.local_store import LocalStore

DENIED = ("AccessDenied", 403)
UNAVAILABLE = ("ServiceUnavailable", 503)


class RefusingStore(LocalStore):
    """``exists`` and ``read`` of each key in ``refused`` raise the botocore ClientError S3 sends with ``answer``."""

    def __init__(self, root: Path, refused: set[str], answer: tuple[str, int] = UNAVAILABLE) -> None:
        super().__init__(root)
        self.refused = refused
        self.answer = answer

    def _refuse(self, key: str, operation: str) -> None:
        from botocore.exceptions import ClientError

        if key in self.refused:
            code, status = self.answer
            raise ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)

    def exists(self, key: str) -> bool:
        self._refuse(key, "HeadObject")
        return super().exists(key)

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        self._refuse(key, "GetObject")
        return super().read(key, max_bytes=max_bytes)
