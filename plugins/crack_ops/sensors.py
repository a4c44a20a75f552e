"""A sensor that waits for upload batches that have not been scored yet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import PokeReturnValue

from crack_ops.hooks import CrackStoreHook, refuse_backfill


class NewBatchesSensor(AwsBaseSensor[CrackStoreHook]):
    """Done when ``incoming/`` holds batches without ``results/<batch_id>/_SUCCESS``; pushes their ids.

    ``batch_ids`` (e.g. from a manual trigger) short-circuits the listing. Templated fields render
    as native values (``"{{ params.max_batches }}"`` is an int, ``"{{ params.batch_ids }}"`` a list).

    :param store: the store URI (default: Variable ``crack_store``, else env ``CRACK_STORE``, else AIRFLOW_HOME).
    :param batch_ids: score just these batches.
    :param max_batches: at most this many new batches per run (None: all).
    """

    aws_hook_class = CrackStoreHook
    template_fields: Sequence[str] = aws_template_fields("store", "batch_ids", "max_batches")

    def __init__(
        self,
        *,
        store: str | None = None,
        batch_ids: Sequence[str] | None = None,
        max_batches: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("render_template_as_native_obj", True)
        super().__init__(**kwargs)
        self.store = store
        self.batch_ids = batch_ids
        self.max_batches = max_batches

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {**super()._hook_parameters, "store": self.store}

    def poke(self, context: Any) -> PokeReturnValue | bool:
        from crack_model.pipelines.nightly import find_new_batches  # pulls in numpy and Pillow: not at DAG parse
        from crack_model.pipelines.stores import refuse_an_empty_store

        refuse_backfill()  # soft_fail skips it: a backfill run waits for no upload (resolve_model says why)
        if self.batch_ids:
            # Once each: a batch named twice was validated twice and counted twice.
            return PokeReturnValue(is_done=True, xcom_value=list(dict.fromkeys(map(str, self.batch_ids))))
        store = self.hook.get_store()
        # A mistyped store holds nothing: no upload will come there, and the run would wait three hours to say so.
        refuse_an_empty_store(store)
        batches = find_new_batches(store, limit=self.max_batches)
        self.log.info("store %s: %d batch(es) to score: %s", store.uri, len(batches), batches)
        return PokeReturnValue(is_done=True, xcom_value=batches) if batches else False
