"""Validation against S3 over real HTTP (moto's server on loopback)."""

from __future__ import annotations

import json

import pytest

from crack_model.core.documents import quarantined_keys, read_outcome
from crack_model.core.errors import CrackModelError
from crack_model.quality.batch_validation import validate_batch
from crack_model.quality.outcome import PASSED_WITH_QUARANTINE
from tests.unit.quality.test_validation import (
    mixed,
    real_objects,
)

pytestmark = pytest.mark.integration


def test_validation_over_s3_writes_report_result_and_quarantine(s3_env, real_files, tmp_path):
    """An s3:// batch: report, outcome and GX result land in the bucket; the bad object is copied to quarantine."""
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="inspections")
    for name, data in real_objects(mixed(real_files, 40)).items():
        client.put_object(Bucket="inspections", Key=f"incoming/night-1/{name}", Body=data)
    cut = real_files["Positive"][-1].read_bytes()[:1000]
    client.put_object(Bucket="inspections", Key="incoming/night-1/cut.jpg", Body=cut)
    named_like_the_manifest = b"<html>an upload named quarantine.json</html>"
    client.put_object(Bucket="inspections", Key="incoming/night-1/quarantine.json", Body=named_like_the_manifest)
    extra_report = tmp_path / "published" / "report.html"

    outcome = validate_batch("s3://inspections", "night-1", report_uri=str(extra_report))

    assert outcome.outcome == PASSED_WITH_QUARANTINE, outcome.reasons
    report = client.get_object(Bucket="inspections", Key="validation/night-1/report.html")
    assert report["ContentType"].startswith("text/html")
    page = report["Body"].read().decode()
    assert "incoming/night-1/cut.jpg" in page and "decodes" in page
    assert extra_report.read_text() == page
    result = json.loads(client.get_object(Bucket="inspections", Key="validation/night-1/result.json")["Body"].read())
    assert result["success"] is True and result["suite_name"] == "crack_model.incoming"
    copy = client.get_object(Bucket="inspections", Key="quarantine/night-1/uploads/cut.jpg")["Body"].read()
    assert copy == cut
    copy = client.get_object(Bucket="inspections", Key="quarantine/night-1/uploads/quarantine.json")["Body"].read()
    assert copy == named_like_the_manifest  # its copy and the manifest beside it both kept
    held = {"incoming/night-1/cut.jpg", "incoming/night-1/quarantine.json"}
    assert quarantined_keys("s3://inspections", "night-1") == held
    assert read_outcome("s3://inspections", "night-1")["outcome"] == PASSED_WITH_QUARANTINE


@pytest.mark.parametrize(
    ("report", "said"),
    [("incoming/night-1/a.jpg", "is an image's name"), ("incoming/report.html", "which validation reads"),
     ("notes.txt", "is an existing file not named .html")],
)  # fmt: skip
def test_a_report_over_an_upload_in_s3_is_refused_before_the_batch_is_read(s3_bucket, report, said):
    """`--report s3://<store>/incoming/...` wrote the HTML over an upload, or added it to the batch."""
    import boto3

    client = boto3.client("s3")
    for key in ("incoming/night-1/a.jpg", "notes.txt"):
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"kept")
    with pytest.raises(CrackModelError, match=f"--report s3://{s3_bucket}/{report} .*{said}.*: give a new .html file"):
        validate_batch(f"s3://{s3_bucket}", "night-1", report_uri=f"s3://{s3_bucket}/{report}")
    listed = client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert {item["Key"]: item["Size"] for item in listed} == {"incoming/night-1/a.jpg": 4, "notes.txt": 4}
