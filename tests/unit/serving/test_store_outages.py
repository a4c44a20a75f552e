"""A store that does not answer (MinIO restarting, S3 throttling past botocore's retries) while a night reads
its uploads: scoring and validation leave those objects to Airflow's retry, and on the last try each becomes
its row with the reason. A refusal of one object (403, 404) is its row at once."""

from __future__ import annotations

import pytest

from crack_model.core import layout
from crack_model.core.local_store import LocalStore
from crack_model.serving.batch import score_shard
from tests.unit.serving.test_batch import read_predictions, upload_synth


@pytest.fixture()
def model_dir(trained_model):
    return str(trained_model.output_dir)


def _not_answering(monkeypatch, keys: set[str]) -> None:
    """``LocalStore.read`` of these keys fails as boto3 does when MinIO is down (after botocore's own retries)."""
    from botocore.exceptions import EndpointConnectionError

    real_read = LocalStore.read

    def read(self, key, **options):
        if key in keys:
            raise EndpointConnectionError(endpoint_url="http://minio:9000/inspections")
        return real_read(self, key, **options)

    monkeypatch.setattr(LocalStore, "read", read)


def test_objects_the_store_did_not_answer_are_read_again_by_the_retry(tmp_path, synth_data, model_dir, monkeypatch):
    """A store outage must not leave good photos as error rows in a complete batch: the others' rows are kept, the
    shard fails (Airflow retries it) and the retry reads just the unanswered ones."""
    from crack_model.core.errors import StoreUnansweredError

    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    keys = sorted(info.key for info in store.list("incoming/b1/"))
    down = {keys[1], keys[4]}
    _not_answering(monkeypatch, down)

    with pytest.raises(StoreUnansweredError, match=r"did not answer for 2 object\(s\) of shard-0000-of-0001 of b"):
        score_shard(str(tmp_path), "b1", model_dir, retry_unanswered=True)
    assert not store.exists(layout.results_key("b1", layout.SUCCESS))
    down.clear()  # the store is back
    report = score_shard(str(tmp_path), "b1", model_dir, retry_unanswered=True)
    assert (report.images, report.skipped_already_done, report.finalized) == (2, 4, True)
    rows = read_predictions(store)
    assert sorted(row["key"] for row in rows) == keys and {row["status"] for row in rows} == {"ok"}


def test_on_the_last_try_an_object_the_store_did_not_answer_is_an_error_row(tmp_path, synth_data, model_dir,
                                                                            monkeypatch):  # fmt: skip
    """Every upload ends as exactly one row: without a retry left, the outage is the row's reason."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    keys = sorted(info.key for info in store.list("incoming/b1/"))
    _not_answering(monkeypatch, {keys[0]})

    report = score_shard(str(tmp_path), "b1", model_dir, retry_unanswered=False)
    assert report.finalized
    rows = {row["key"]: row for row in read_predictions(store)}
    assert rows[keys[0]]["status"] == "error" and "EndpointConnectionError" in rows[keys[0]]["error"]
    assert [rows[key]["status"] for key in keys[1:]] == ["ok"] * 5


@pytest.mark.parametrize(
    ("error", "unanswered"),
    [
        ("EndpointConnectionError", True),
        ("ReadTimeoutError", True),
        ("IncompleteReadError", True),
        ("ConnectionError", True),
        (("SlowDown", 503), True),
        (("InternalError", 500), True),
        (("TooManyRequests", 429), True),  # these five were taken for refused objects: never scored
        (("RequestThrottled", 400), True),
        (("BandwidthLimitExceeded", 400), True),
        (("PriorRequestNotComplete", 400), True),
        (("RequestTimeoutException", 400), True),
        (("NotImplemented", 501), False),
        (("ExpiredToken", 400), False),
        (("AccessDenied", 403), False),
        (("NoSuchKey", 404), False),
        ("ValueError", False),
    ],
)
def test_which_errors_mean_the_store_did_not_answer(error, unanswered):
    """An outage or throttling is worth another attempt; a refusal of this one object is its row's reason."""
    from botocore.exceptions import ClientError, EndpointConnectionError, IncompleteReadError, ReadTimeoutError

    from crack_model.core.errors import store_did_not_answer

    made = {
        "EndpointConnectionError": lambda: EndpointConnectionError(endpoint_url="http://minio:9000"),
        "ReadTimeoutError": lambda: ReadTimeoutError(endpoint_url="http://minio:9000"),
        "IncompleteReadError": lambda: IncompleteReadError(actual_bytes=10, expected_bytes=2000),
        "ConnectionError": lambda: ConnectionResetError("reset by peer"),
        "ValueError": lambda: ValueError("odd"),
    }
    if isinstance(error, tuple):
        code, status = error
        raised = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
    else:
        raised = made[error]()
    assert store_did_not_answer(raised) is unanswered


def test_validation_waits_for_objects_the_store_did_not_answer_until_the_last_try(tmp_path, synth_data,
                                                                                  monkeypatch):  # fmt: skip
    """Else an outage quarantines good photos for good (the batch then completes without them)."""
    from crack_model.core.errors import StoreUnansweredError
    from crack_model.pipelines.nightly import validate_incoming

    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    keys = sorted(info.key for info in store.list("incoming/b1/"))
    _not_answering(monkeypatch, {keys[2]})

    with pytest.raises(StoreUnansweredError, match="did not answer for incoming/b1/"):
        validate_incoming(store, "b1", retry_unanswered=True)
    assert not store.exists(layout.validation_key("b1", layout.OUTCOME))
    last = validate_incoming(store, "b1", retry_unanswered=False)  # the object is reported, as unreadable
    assert last["objects"] == 6 and "decodes: 1 of 6 objects" in last["reasons"][0], last
