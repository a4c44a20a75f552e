"""A hostile batch beside two healthy ones, through the real nightly DAG (dag.test()), on a local store and on S3.

The hostile batch holds odd names (a `_DSC` camera name, a backslash, a non-UTF-8 name, a 250-byte
name, symbolic links into and out of the store, a `..` key on S3) and odd content (a decompression
bomb, a 300000x40 strip, an 80-megapixel 16-bit PNG, a TGA). The healthy batches must come out
complete and identical to a night without the hostile batch; the hostile batch fails validation,
is released by the operator's `release_batches` param, and then has exactly one row per upload;
nothing from outside the store is copied into it; memory stays under the budget.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import uuid
from pathlib import Path

import pytest
from PIL import Image

from crack_model.core.documents import QuarantineManifest
from crack_model.core.storage import open_store
from demo.airflow_env import airflow_environment, migrate, run_dag
from tests import imagefiles

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEALTHY = ("site-a", "site-b")
HOSTILE = "hostile"
DEEP = "deep-folders"  # S3 only: keys near the 1,024-byte limit
SECRET = b"outside the store: must never be copied in"
MEMORY_BUDGET_BYTES = int(1.5 * 1024**3)


def strip_png() -> bytes:
    return imagefiles.encode(Image.new("L", (300_000, 40), 128), "PNG")


def giant_sixteen_bit_png() -> bytes:
    """80 megapixels of 16-bit grey: about 171 KiB on disk, 160 MB of pixels."""
    return imagefiles.encode(Image.new("I;16", (10_328, 7_760), 30_000), "PNG")


def tga() -> bytes:
    return imagefiles.encode(imagefiles.gradient_rgb(), "TGA")


def healthy_uploads(metu_sample: Path) -> dict[str, bytes]:
    photos = [
        *sorted((metu_sample / "Positive").glob("*.jpg"))[:4],
        *sorted((metu_sample / "Negative").glob("*.jpg"))[:4],
    ]
    return {path.name: path.read_bytes() for path in photos}


def hostile_content() -> dict[str, bytes]:
    """Content every store can hold, under names every store accepts."""
    return {
        "_DSC1234.JPG": imagefiles.jpeg(),
        "bomb.png": imagefiles.decompression_bomb_png(),
        "strip.png": strip_png(),
        "giant-16bit.png": giant_sixteen_bit_png(),
        "old-format.tga": tga(),
        f"{'n' * 246}.jpg": imagefiles.jpeg(),  # 250 bytes: longer than most file systems allow with a temp suffix
        "ok.jpg": imagefiles.jpeg(),
    }


def predictions(store_uri: str, batch_id: str) -> list[dict[str, str]]:
    data = open_store(store_uri).read(f"results/{batch_id}/predictions.csv").decode("utf-8")
    return list(csv.DictReader(io.StringIO(data)))


def stable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{key: value for key, value in row.items() if key != "scored_at"} for row in rows]


def night(environment: dict[str, str], store: str, model: str, **params: object) -> dict:
    return run_dag("crack_nightly_scoring", {"store": store, "model": model, **params}, environment)


@pytest.fixture(scope="module")
def model_folder(trained_model) -> str:
    return str(trained_model.output_dir)


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict[str, str]:
    env = airflow_environment(tmp_path_factory.mktemp("airflow-home"),
                              {"CRACK_MODEL_CACHE": str(tmp_path_factory.mktemp("cache"))})  # fmt: skip
    migrate(env)
    return env


@pytest.fixture(scope="module")
def clean_night(tmp_path_factory, metu_sample, model_folder, environment) -> dict[str, list[dict[str, str]]]:
    """The healthy batches alone: the rows a night without the hostile batch gives."""
    root = tmp_path_factory.mktemp("clean-store")
    for batch_id in HEALTHY:
        for name, data in healthy_uploads(metu_sample).items():
            (root / "incoming" / batch_id).mkdir(parents=True, exist_ok=True)
            (root / "incoming" / batch_id / name).write_bytes(data)
    assert night(environment, str(root), model_folder)["state"] == "success"
    return {batch_id: stable(predictions(str(root), batch_id)) for batch_id in HEALTHY}


def check_healthy_batches(store: str, clean_night: dict[str, list[dict[str, str]]]) -> None:
    for batch_id in HEALTHY:
        assert stable(predictions(store, batch_id)) == clean_night[batch_id], batch_id


def test_a_hostile_batch_on_the_local_store_costs_rows_not_the_night(
    tmp_path, metu_sample, model_folder, environment, clean_night
):
    """Local store: healthy batches match a clean night; the released hostile batch has one row per upload."""
    root = tmp_path / "store"
    for batch_id in HEALTHY:
        folder = root / "incoming" / batch_id
        folder.mkdir(parents=True)
        for name, data in healthy_uploads(metu_sample).items():
            (folder / name).write_bytes(data)
    hostile = root / "incoming" / HOSTILE
    hostile.mkdir(parents=True)
    for name, data in hostile_content().items():
        (hostile / name).write_bytes(data)
    (hostile / "site\\north.jpg").write_bytes(imagefiles.jpeg())
    with open(os.fsencode(hostile) + b"/caf\xe9.jpg", "wb") as handle:  # a Latin-1 name from an old camera tool
        handle.write(imagefiles.jpeg())
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(SECRET)
    (hostile / "link-out.jpg").symlink_to(outside)
    (hostile / "link-in.jpg").symlink_to(root / "incoming" / HEALTHY[0] / next(iter(healthy_uploads(metu_sample))))
    (root / "incoming" / "linked-batch").symlink_to(root / "incoming" / HEALTHY[0])  # a symlinked batch folder
    uploads = len(list(hostile.iterdir()))

    first = night(environment, str(root), model_folder)

    check_healthy_batches(str(root), clean_night)
    summary = json.loads(next((root / "runs").glob("*.json")).read_text())
    assert HOSTILE in summary["failed_batches"] and not (root / "results" / HOSTILE / "_SUCCESS").exists()
    assert not (root / "results" / "linked-batch").exists()
    assert first["tasks"]["publish_run_summary"] == "success"

    released = night(environment, str(root), model_folder, batch_ids=[HOSTILE], release_batches=[HOSTILE])

    assert released["state"] == "success"
    rows = predictions(str(root), HOSTILE)
    assert len(rows) == uploads and len({row["key"] for row in rows}) == uploads
    by_name = {row["key"].rsplit("/", 1)[-1]: row for row in rows}
    assert by_name["_DSC1234.JPG"]["status"] == "ok" and by_name["ok.jpg"]["status"] == "ok"
    assert by_name["link-out.jpg"]["status"] != "ok" and "link" in by_name["link-out.jpg"]["error"]
    assert by_name["old-format.tga"]["status"] != "ok" and "TGA" in by_name["old-format.tga"]["error"]
    assert by_name["bomb.png"]["status"] != "ok"
    assert all(row["error"] for row in rows if row["status"] != "ok")
    every_stored_file = [path for path in root.rglob("*") if path.is_file() and not path.is_symlink()]
    assert not [path for path in every_stored_file if path.read_bytes() == SECRET]
    for run in (first, released):  # the whole night (Airflow, TensorFlow, every task) in one process
        assert run["peak_rss_bytes"] is None or run["peak_rss_bytes"] < MEMORY_BUDGET_BYTES, run["peak_rss_bytes"]


def test_a_hostile_batch_on_s3_costs_rows_not_the_night(
    s3_endpoint, metu_sample, model_folder, environment, clean_night
):
    """S3 over HTTP: a `..` key, a backslash key, a long key and odd content; healthy batches unaffected; a batch of
    deep folders has its held-back upload of a 1,020-byte key copied to quarantine."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")  # fmt: skip
    bucket = f"hostile-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    for batch_id in HEALTHY:
        for name, data in healthy_uploads(metu_sample).items():
            client.put_object(Bucket=bucket, Key=f"incoming/{batch_id}/{name}", Body=data)
    names = {**hostile_content(), "sub/../evil.jpg": imagefiles.jpeg(), "site\\north.jpg": imagefiles.jpeg(),
             f"{'m' * 600}.jpg": imagefiles.jpeg()}  # fmt: skip
    for name, data in names.items():
        client.put_object(Bucket=bucket, Key=f"incoming/{HOSTILE}/{name}", Body=data)
    # Deep folders from an inspection app: a cut photo under a key of 1,020 bytes, held back, gets its copy.
    held_long = "/".join(["d" * 200] * 4) + "/" + "c" * (1020 - len(f"incoming/{DEEP}/") - 808) + ".jpg"
    for index, path in enumerate(sorted((metu_sample / "Negative").glob("*.jpg"))[10:40]):
        client.put_object(Bucket=bucket, Key=f"incoming/{DEEP}/photo-{index:02d}.jpg", Body=path.read_bytes())
    client.put_object(Bucket=bucket, Key=f"incoming/{DEEP}/{held_long}", Body=imagefiles.truncated_jpeg())
    connection = {"conn_type": "aws", "login": "testing", "password": "testing",
                  "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}  # fmt: skip
    env = {**environment, "AIRFLOW_CONN_CRACK_S3": json.dumps(connection)}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        env.pop(key, None)
    store = f"s3://{bucket}"
    common = {"aws_conn_id": "crack_s3"}

    night(env, store, model_folder, **common)
    released = night(env, store, model_folder, batch_ids=[HOSTILE], release_batches=[HOSTILE], **common)

    assert released["state"] == "success"
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_ENDPOINT_URL=s3_endpoint)
    try:
        check_healthy_batches(store, clean_night)
        rows = predictions(store, HOSTILE)
        deep_rows = {row["key"]: row for row in predictions(store, DEEP)}
        held = QuarantineManifest.read(open_store(store), f"quarantine/{DEEP}/quarantine.json")
        copies = {entry.key: entry.quarantine_key for entry in held.entries} if held else {}
        copy_key = copies.get(f"incoming/{DEEP}/{held_long}")
        copied = open_store(store).read(copy_key) if copy_key else None
    finally:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
            os.environ.pop(key, None)
    assert len(rows) == len(names) == len({row["key"] for row in rows})
    digest = hashlib.sha256(held_long.encode()).hexdigest()
    assert copies == {f"incoming/{DEEP}/{held_long}": f"quarantine/{DEEP}/long-keys/{digest}.jpg"}
    assert copied == imagefiles.truncated_jpeg() and len(deep_rows) == 31
    assert deep_rows[f"incoming/{DEEP}/{held_long}"]["status"] == "quarantined"
    evil = next(row for row in rows if row["key"].endswith("evil.jpg"))
    assert evil["status"] != "ok" and evil["error"]
