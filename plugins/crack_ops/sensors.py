"""A sensor that waits for upload batches that have not been scored yet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from crack_ops.hooks import CrackStoreHook


class NewBatchesSensor(BaseSensorOperator):
    """Done when ``incoming/`` holds batches without ``results/<batch_id>/_SUCCESS``; pushes their ids.

    ``batch_ids`` (e.g. from a manual trigger) short-circuits the listing.
    """

    template_fields: Sequence[str] = ("store", "aws_conn_id", "batch_ids", "max_batches")

    def __init__(
        self,
        *,
        store: str | None = None,
        aws_conn_id: str | None = "aws_default",
        batch_ids: Any = None,
        max_batches: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.aws_conn_id = aws_conn_id
        self.batch_ids = batch_ids
        self.max_batches = max_batches

    def poke(self, context: Any) -> PokeReturnValue | bool:
        from crack_model.pipelines.nightly import find_new_batches

        store = CrackStoreHook(self.store, self.aws_conn_id).configure()
        if self.batch_ids:
            requested = self.batch_ids if isinstance(self.batch_ids, list) else str(self.batch_ids).split(",")
            return PokeReturnValue(is_done=True, xcom_value=[str(b).strip() for b in requested if str(b).strip()])
        limit = int(self.max_batches) if self.max_batches else None
        batches = find_new_batches(store, limit=limit)
        self.log.info("store %s: %d batch(es) to score: %s", store, len(batches), batches)
        return PokeReturnValue(is_done=True, xcom_value=batches) if batches else False
