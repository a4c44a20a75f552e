"""The S3 store (AWS S3, MinIO or any S3-compatible endpoint) through boto3.

Credentials, region and endpoint come from the boto3 session and endpoint URL the caller hands in
(e.g. an Airflow connection's session, whose assumed-role credentials refresh themselves), else
from the usual AWS environment and config files (``AWS_ENDPOINT_URL`` points it at MinIO).
Retries use botocore's standard mode; large objects go up in multipart chunks. An S3 PUT is
atomic: readers see the old object or the new one.
"""

from __future__ import annotations

import builtins
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crack_model.core.errors import CrackModelError, store_did_not_answer
from crack_model.core.object_keys import (
    MULTIPART_THRESHOLD,
    TEMP_MARKER,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectTooLargeError,
    PreconditionFailedError,
    join_key,
    key_problem,
    validate_key,
)

# Per attempt: a connection within 10 s, and no 20 s without a byte of the answer (a big object streams on);
# 6 attempts with botocore's backoff give up on a stalled object in about 2.5 minutes.
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 20
MAX_ATTEMPTS = 6


class S3Store:
    """A bucket and key prefix on S3 or an S3-compatible store (MinIO, Ceph, ...).

    Args:
        session: the boto3 Session to build the client from (its credentials, refreshable ones
            included, and its region); None: a default session (the AWS environment and config files).
        endpoint_url: the S3 endpoint (MinIO, Ceph, ...); None: AWS, or ``AWS_ENDPOINT_URL``.
        client: a ready boto3 S3 client (tests); the other options are then unused.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        session: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
        max_pool_connections: int = 32,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.session = session
        self.endpoint_url = endpoint_url
        self._client = client
        self._client_options = {"region_name": region_name, "max_pool_connections": max_pool_connections}
        self._client_lock = threading.Lock()
        self._bucket_found = False

    @property
    def client(self) -> Any:
        # boto3 clients are thread-safe; build one lazily so that opening a store is free.
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                options = self._client_options
                # A stalled answer is given up on in CONNECT/READ seconds per attempt, not botocore's 60: with 9
                # attempts one stalled GET held its object, and every row after it, for 9 minutes; a few dozen
                # outlasted validate_batch's 30-minute timeout on every try, and the batch got no rows at all.
                config = Config(
                    retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    read_timeout=READ_TIMEOUT_SECONDS,
                    max_pool_connections=options["max_pool_connections"],
                )
                session = self.session if self.session is not None else boto3.session.Session()
                self._client = session.client(
                    "s3", endpoint_url=self.endpoint_url, region_name=options["region_name"], config=config
                )
            return self._client

    def _key(self, key: str) -> str:
        # The key as given, not NFC-normalised: S3 names are exact bytes, and a listed NFD key must read back.
        # A trailing '/' is a folder (``url("incoming/b1/")``); validate_key refuses it for an object.
        validate_key(key[:-1] if key.endswith("/") and key.strip("/") else key)
        return join_key(self.prefix, key)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if prefix and not prefix.endswith("/"):
            # A key names one object; otherwise list it as a folder, so that
            # "incoming/b1" does not also match "incoming/b10/...".
            single = self.head(prefix)
            if single is not None:
                yield single
                return
        base = self._key(prefix.rstrip("/")) if prefix.strip("/") else self.prefix
        full_prefix = f"{base}/" if base else ""
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in self._pages(Prefix=full_prefix):
            for item in page.get("Contents", []):
                key = item["Key"][strip:]
                if key.endswith("/") and not item["Size"]:
                    continue  # folder placeholder objects some tools create; one holding bytes is listed below
                # An uploader may use any key ("a/../b.jpg", "a//b.jpg"): list it with the reason, never raise.
                etag = item.get("ETag", "").strip('"') or None
                yield ObjectInfo(key, int(item["Size"]), etag, problem=key_problem(key))

    def folders(self, prefix: str = "") -> builtins.list[str]:
        """Names of the immediate sub-folders of ``prefix`` (S3 common prefixes)."""
        return self._names_in(prefix, want_folders=True)

    def files(self, prefix: str = "") -> builtins.list[str]:
        """Names of the objects in ``prefix`` itself, not in a sub-folder (a console's empty folder marker left out)."""
        return self._names_in(prefix, want_folders=False)

    def _names_in(self, prefix: str, *, want_folders: bool) -> builtins.list[str]:
        base = self._key(prefix.strip("/")) if prefix.strip("/") else self.prefix
        full_prefix = f"{base}/" if base else ""
        names: set[str] = set()
        for page in self._pages(Prefix=full_prefix, Delimiter="/"):
            if want_folders:
                names.update(
                    common["Prefix"][len(full_prefix) :].strip("/") for common in page.get("CommonPrefixes", [])
                )
            else:  # the folder's own marker object ("prefix/", an empty name) left out
                names.update(
                    item["Key"][len(full_prefix) :] for item in page.get("Contents", []) if item["Key"] != full_prefix
                )
        return sorted(names)

    def _pages(self, **listing: str) -> Iterator[dict[str, Any]]:
        """The bucket's ListObjectsV2 pages. A bucket that is not there (a mistyped store, holdout or pool) raised
        botocore's bare NoSuchBucket, which named neither the URI nor what to check, and was retried as if the
        store had not answered; it is the CrackModelError a HEAD's check raises."""
        from botocore.exceptions import ClientError

        try:
            yield from self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, **listing)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise
            raise self._no_bucket() from None

    def _no_bucket(self) -> CrackModelError:
        where = self.client.meta.endpoint_url
        return CrackModelError(f"bucket {self.bucket} at {where} does not exist: check the store URI {self.uri}")

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            # botocore's StreamingBody itself, not ``with`` (which yields the raw urllib3 stream): its whole read
            # checks the length and the checksum S3 sent, so a body cut short or corrupted is an error.
            body = response["Body"]
            try:
                size = response["ContentLength"]  # of this GET's body, which cannot grow while it is read
                if max_bytes is not None and size > max_bytes:  # refused: the body is never read
                    raise ObjectTooLargeError(self.url(key), size, max_bytes)
                return bytes(body.read())
            finally:
                body.close()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectNotFoundError(f"object not found: {self.url(key)}") from None
            raise

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                self._check_bucket()
                return None
            raise
        return ObjectInfo(key, int(response["ContentLength"]), response.get("ETag", "").strip('"') or None)

    def _check_bucket(self) -> None:
        """A HEAD's 404 has no body to say whether the key or the whole bucket is missing: a mistyped bucket read
        as "no champion", "not validated yet". Asked until answered; a bucket the answer does not deny (403: we
        may not HEAD it; a 5xx) is taken as there."""
        from botocore.exceptions import ClientError

        if self._bucket_found:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchBucket", "404", "NotFound"):
                raise self._no_bucket() from None
            if error.response.get("Error", {}).get("Code") not in ("403", "AccessDenied", "Forbidden"):
                return  # no answer either way (throttled, a 5xx): taken as there, and asked again next time
        self._bucket_found = True

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def write(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        from botocore.exceptions import ClientError

        validate_key(key)  # strictly: no trailing '/', no '..' (``_key`` also serves folder URLs)
        extra = {"ContentType": content_type} if content_type else {}
        try:
            if len(data) >= MULTIPART_THRESHOLD:  # boto3 names the key itself when a part is refused
                import io

                from boto3.s3.transfer import TransferConfig

                transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD)
                self.client.upload_fileobj(
                    io.BytesIO(data), self.bucket, self._key(key), ExtraArgs=extra, Config=transfer
                )
            else:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except ClientError as error:
            raise _named_write_error(error, self.url(key)) from None

    def write_if_match(self, key: str, data: bytes, etag: str | None) -> None:
        """Conditional PUT: If-Match the ETag read before, or If-None-Match for a new object."""
        validate_key(key)
        from botocore.exceptions import ClientError

        condition = {"IfMatch": f'"{etag}"'} if etag else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise PreconditionFailedError(f"{self.url(key)} changed since it was read") from None
            raise _named_write_error(error, self.url(key)) from None

    def delete(self, key: str) -> None:
        """Remove one object (bookkeeping only: uploads and quarantine are never deleted)."""
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{TEMP_MARKER}{uuid.uuid4().hex}")  # fixed length: fits beside any name
        try:
            self.client.download_file(self.bucket, self._key(key), str(temporary))
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    def upload(self, path: Path, key: str) -> None:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD)
        self.client.upload_file(str(path), self.bucket, self._key(key), Config=transfer)


def _named_write_error(error: Any, url: str) -> Any:
    """A ClientError of a write, with a message that names the object and what to do (S3's names neither: "Access
    Denied" alone). Same class, code and status: callers tell a refusal from a store that did not answer by them
    (``errors.store_did_not_answer``), and a retry is still the remedy for the latter."""
    if store_did_not_answer(error):
        advice = "the store did not answer; a later try writes it again"
    else:
        advice = "check that the bucket policy and the credentials allow s3:PutObject there"
    detail = error.response.get("Error", {})
    message = f"{detail.get('Message') or detail.get('Code') or 'refused'} (writing {url}: {advice})"
    return type(error)({**error.response, "Error": {**detail, "Message": message}}, error.operation_name)
