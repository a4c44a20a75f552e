"""Batch scoring from object storage: bad inputs, tiling, sharding, idempotency, resume, S3."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crack_model.core import layout
from crack_model.core.documents import QuarantineManifest
from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.serving.batch import score_batch, score_shard
from crack_model.serving.batch_results import finalize_batch
from crack_model.serving.scorer import load_scorer
from tests import imagefiles
from tests.gate_models import variant
from tests.gc_hang_probe import suspended_stages

VOLATILE = ("scored_at",)


def read_predictions(store, batch_id="b1"):
    data = store.read(layout.results_key(batch_id, layout.PREDICTIONS)).decode()
    return list(csv.DictReader(io.StringIO(data)))


def comparable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def upload_synth(store, synth_data, batch_id="b1", count=12):
    for class_name in ("Positive", "Negative"):
        for path in sorted((synth_data / class_name).glob("*.jpg"))[:count]:
            store.write(f"incoming/{batch_id}/{class_name.lower()}/{path.name}", path.read_bytes())


def large_photo(seed=0, size=(700, 520)) -> bytes:
    from crack_model.data.synth import draw_crack, synth_image

    rng = np.random.default_rng(seed)
    image = synth_image(rng, size[0]).resize(size)
    return imagefiles.encode(draw_crack(image, rng), "JPEG", quality=90)


@pytest.fixture()
def model_dir(trained_model):
    return str(trained_model.output_dir)


def test_bad_inputs_become_rows_and_the_rest_is_scored(tmp_path, synth_data, model_dir):
    """Every awkward upload gets a row with a clear status; good images are scored."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    bad = {
        "zero.jpg": (b"", "empty file"),
        "truncated.jpg": (imagefiles.truncated_jpeg(), "truncated"),
        "report.jpg": (imagefiles.not_an_image(), "not an image"),
        "bomb.png": (imagefiles.decompression_bomb_png(), "too large"),
    }
    good = {
        "sixteen.png": imagefiles.sixteen_bit_png(),
        "cmyk.jpg": imagefiles.cmyk_jpeg(),
        "palette.png": imagefiles.palette_png(),
        "rotated.jpg": imagefiles.exif_rotated_jpeg(6),
        "ünïcode dir/with space.jpg": imagefiles.jpeg(),
        "site/large photo.jpg": large_photo(),
        "rgba.png": imagefiles.rgba_png(),
    }
    for name, (data, _reason) in bad.items():
        store.write(f"incoming/b1/{name}", data)
    for name, data in good.items():
        store.write(f"incoming/b1/{name}", data)
    store.write("incoming/b1/_READY", b"")  # an upload marker, not an image
    report = score_batch(str(tmp_path), "b1", model_dir)
    assert report.finalized
    rows = {row["key"].removeprefix("incoming/b1/"): row for row in read_predictions(store)}
    assert len(rows) == 6 + len(bad) + len(good)
    assert "_READY" not in rows
    for name, (_data, reason) in bad.items():
        assert rows[name]["status"] == "error" and reason in rows[name]["error"], rows[name]
        assert rows[name]["crack_probability"] == ""
    for name in good:
        assert rows[name]["status"] == "ok", rows[name]
        assert 0.0 <= float(rows[name]["crack_probability"]) <= 1.0
    assert (rows["rotated.jpg"]["width"], rows["rotated.jpg"]["height"]) == ("48", "64")
    assert int(rows["site/large photo.jpg"]["tile_count"]) > 1
    assert rows["cmyk.jpg"]["tile_count"] == "1"
    summary = json.loads(store.read(layout.results_key("b1", layout.SUMMARY)))
    assert summary["status_counts"] == {"error": len(bad), "ok": 6 + len(good)}
    assert summary["objects"] == len(rows)


def test_rows_record_model_version_threshold_and_hash(tmp_path, synth_data, model_dir):
    """Each row carries the model version, its threshold, runtime and the object's sha256."""
    import hashlib

    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    score_batch(str(tmp_path), "b1", model_dir)
    scorer = load_scorer(model_dir)
    for row in read_predictions(store):
        assert row["model_version"] == scorer.version
        assert float(row["threshold"]) == pytest.approx(scorer.card.threshold)
        assert row["runtime"] == scorer.runtime.name
        assert row["sha256"] == hashlib.sha256(store.read(row["key"])).hexdigest()
        assert row["label"] == (
            "Positive" if float(row["crack_probability"]) >= float(row["threshold"]) else "Negative"
        )


def test_the_default_path_keeps_tile_scores_and_draws_no_overlay(tmp_path, synth_data, model_dir):
    """By default each scored image's tiles go beside its part rows, and no overlay is drawn while scoring."""
    from crack_model.serving.tile_scores import iter_tile_scores, tile_score_files

    store = LocalStore(tmp_path)
    store.write("incoming/b1/site/large photo.jpg", large_photo())
    store.write("incoming/b1/broken.jpg", imagefiles.truncated_jpeg())
    upload_synth(store, synth_data, count=4)
    scorer = load_scorer(model_dir)
    scorer.card.threshold = 0.0  # every image is a crack: the old default would have drawn each
    score_batch(str(tmp_path), "b1", scorer, part_rows=3)
    assert list(store.list("results/b1/overlays/")) == []
    rows = {row["key"]: row for row in read_predictions(store) if row["status"] == "ok"}
    files = tile_score_files(store, f"results/b1/_parts/{scorer.version}/")
    assert len(files) == len([info for info in store.list("results/b1/_parts/") if info.key.endswith(".csv")]) > 1
    stored = {scores.key: scores for scores in iter_tile_scores(store, files)}
    assert set(stored) == set(rows)  # every image scored, the broken one (an error row) has no tiles
    photo = stored["incoming/b1/site/large photo.jpg"]
    assert len(photo.boxes) == len(photo.probabilities) == int(rows[photo.key]["tile_count"]) > 1
    assert max(photo.probabilities) == pytest.approx(float(rows[photo.key]["crack_probability"]), abs=1e-6)
    assert max(box[2] for box in photo.boxes) == int(rows[photo.key]["width"])


def test_overlays_are_written_for_crack_images_when_asked(tmp_path, synth_data, model_dir):
    """With overlays=True, images labeled crack get a PNG heat map under results/<batch>/overlays/ at once."""
    store = LocalStore(tmp_path)
    store.write("incoming/b1/site/large photo.jpg", large_photo())
    upload_synth(store, synth_data, count=4)
    scorer = load_scorer(model_dir)
    scorer.card.threshold = 0.0  # every image is a crack: each must get an overlay
    score_batch(str(tmp_path), "b1", scorer, overlays=True)
    rows = read_predictions(store)
    for row in rows:
        relative = row["key"].removeprefix("incoming/b1/")
        overlay = Image.open(io.BytesIO(store.read(f"results/b1/overlays/{relative}.png")))
        assert overlay.format == "PNG"
        assert overlay.size == (int(row["width"]), int(row["height"]))


def test_scoring_twice_is_idempotent(tmp_path, synth_data, model_dir):
    """A second run finds _SUCCESS and changes nothing; --force rewrites the same rows."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data)
    score_batch(str(tmp_path), "b1", model_dir)
    first = read_predictions(store)
    again = score_batch(str(tmp_path), "b1", model_dir)
    assert again.already_complete
    assert read_predictions(store) == first
    score_batch(str(tmp_path), "b1", model_dir, force=True)
    forced = read_predictions(store)
    assert comparable(forced) == comparable(first)
    assert len({row["key"] for row in forced}) == len(forced)


def test_shards_give_the_same_union_as_one_part(tmp_path, synth_data, model_dir):
    """Scoring in 3 shards (any order) gives exactly the rows of a single-part run."""
    single, sharded = LocalStore(tmp_path / "one"), LocalStore(tmp_path / "three")
    for store in (single, sharded):
        upload_synth(store, synth_data)
        store.write("incoming/b1/broken.jpg", imagefiles.truncated_jpeg())
    score_batch(str(single.root), "b1", model_dir)
    reports = [score_shard(str(sharded.root), "b1", model_dir, layout.Shard(i, 3)) for i in (2, 0, 1)]
    assert [r.finalized for r in reports] == [False, False, True]
    assert sum(r.images for r in reports) == 25
    assert all(r.images > 0 for r in reports)
    one, three = comparable(read_predictions(single)), comparable(read_predictions(sharded))
    assert [r["key"] for r in one] == [r["key"] for r in three]
    for a, b in zip(one, three, strict=True):
        assert {k: v for k, v in a.items() if k != "crack_probability"} == {
            k: v for k, v in b.items() if k != "crack_probability"
        }
        if a["crack_probability"]:
            assert float(a["crack_probability"]) == pytest.approx(float(b["crack_probability"]), abs=1e-5)


def test_finalize_refuses_until_every_shard_is_done(tmp_path, synth_data, model_dir):
    """No _SUCCESS while a shard is missing; the error names it."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    score_shard(str(tmp_path), "b1", model_dir, layout.Shard(0, 2))
    assert not store.exists("results/b1/_SUCCESS")
    with pytest.raises(CrackModelError, match="shard-0001-of-0002"):
        finalize_batch(store, "b1", load_scorer(model_dir).version, 2)


def test_shards_scored_by_two_model_versions_say_why_the_batch_cannot_complete(tmp_path, synth_data, model_dir):
    """Two processes each resolved the champion, and it moved in between: neither shard's version finishes the
    batch, and the second says so instead of "completes when all shards are done"."""
    store = LocalStore(tmp_path / "store")
    upload_synth(store, synth_data, count=3)
    other = variant(Path(model_dir), tmp_path / "other", "20261207T000000Z-0ther000")
    first = score_shard(store.uri, "b1", model_dir, layout.Shard(0, 2))
    assert not first.finalized and "scored by model version" not in first.waiting_for
    second = score_shard(store.uri, "b1", str(other), layout.Shard(1, 2))
    assert not second.finalized and not store.exists("results/b1/_SUCCESS")
    assert (f"shard-0000-of-0002 of batch b1 (model 20261207T000000Z-0ther000) has not finished; it was scored by "
            f"model version {first.model_version} instead") in second.waiting_for  # fmt: skip


class _InterruptedError(Exception):
    pass


def test_an_interrupted_shard_resumes_without_losing_or_duplicating(tmp_path, synth_data, model_dir, monkeypatch):
    """A run that dies after some parts is finished by the next run: same rows as an uninterrupted run."""
    reference, interrupted = LocalStore(tmp_path / "ref"), LocalStore(tmp_path / "cut")
    for store in (reference, interrupted):
        upload_synth(store, synth_data, count=20)
    score_batch(str(reference.root), "b1", model_dir, part_rows=5)

    scorer = load_scorer(model_dir)
    # Patched on the class: scoring may run single-threaded copies of the runtime side by side.
    runtime_class = type(scorer.runtime)
    real_predict, calls = runtime_class.predict, []

    def dying_predict(self, pixels):
        calls.append(1)
        # Some images finished, not all: 4 per batch, and up to 3 flips of each patch the card confirms.
        if len(calls) > 8:
            raise _InterruptedError
        return real_predict(self, pixels)

    monkeypatch.setattr(runtime_class, "predict", dying_predict)
    with pytest.raises(_InterruptedError):
        score_batch(str(interrupted.root), "b1", scorer, part_rows=5, batch_size=4, workers=1)
    parts = [i.key for i in interrupted.list("results/b1/_parts") if i.key.endswith(".csv")]
    assert parts and not interrupted.exists("results/b1/_SUCCESS")
    monkeypatch.setattr(runtime_class, "predict", real_predict)
    report = score_batch(str(interrupted.root), "b1", scorer, part_rows=5)
    assert report.skipped_already_done >= 5 and report.finalized
    resumed, expected = comparable(read_predictions(interrupted)), comparable(read_predictions(reference))
    assert [r["key"] for r in resumed] == [r["key"] for r in expected]
    for a, b in zip(resumed, expected, strict=True):
        assert a["label"] == b["label"]
        assert float(a["crack_probability"]) == pytest.approx(float(b["crack_probability"]), abs=1e-5)


def test_a_forced_rescore_stopped_midway_leaves_a_batch_that_resumes(tmp_path, synth_data, model_dir, monkeypatch):
    """Ctrl-C while --force deleted the parts left _SUCCESS standing: the next run said "already complete", and
    the rows whose tile scores were gone could never get an overlay."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=5)
    score_batch(str(tmp_path), "b1", model_dir, part_rows=4)
    first = read_predictions(store)
    real_delete = LocalStore.delete

    def interrupted_delete(self, key):
        if "/_parts/" in key:
            raise KeyboardInterrupt
        return real_delete(self, key)

    monkeypatch.setattr(LocalStore, "delete", interrupted_delete)
    with pytest.raises(KeyboardInterrupt):
        score_batch(str(tmp_path), "b1", model_dir, part_rows=4, force=True)
    monkeypatch.setattr(LocalStore, "delete", real_delete)
    assert not store.exists(layout.results_key("b1", layout.SUCCESS))
    report = score_batch(str(tmp_path), "b1", model_dir, part_rows=4)
    assert not report.already_complete and report.finalized
    assert comparable(read_predictions(store)) == comparable(first)


class _WriteFailedError(OSError):
    pass


def test_a_part_that_cannot_be_written_stops_scoring_there_and_then(tmp_path, synth_data, model_dir, monkeypatch):
    """The shard fails, and scoring's fetching and decoding stages are closed with it, not left suspended while
    the failure is held, for whatever closes them then (a collection in any thread could hang: gc_hang_probe.py)."""
    import gc

    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=20)
    real_write = LocalStore.write

    def failing_write(self, key, *args, **options):
        if "/_parts/" in key and key.endswith(".csv"):
            raise _WriteFailedError(f"no space left for {key}")
        return real_write(self, key, *args, **options)

    monkeypatch.setattr(LocalStore, "write", failing_write)
    gc.collect()
    earlier = suspended_stages()  # an earlier test's failure may hold its own
    gc.disable()  # only what the code itself closes is closed
    try:
        # With a progress bar: tqdm's bar, unlike its disabled path, does not close what it wraps.
        with pytest.raises(_WriteFailedError, match="part-000000") as failure:
            score_batch(str(tmp_path), "b1", model_dir, part_rows=5, batch_size=4, workers=2, progress=True)
        assert failure.value.__traceback__ is not None  # held, as a task runner logging it holds it
        assert suspended_stages(other_than=earlier) == []
    finally:
        gc.enable()


def test_a_batch_with_no_uploads_is_refused(tmp_path, model_dir):
    """A mistyped batch id: a clear error, and no _SUCCESS that would hide the uploads that come later."""
    store = LocalStore(tmp_path)
    store.write("incoming/2026-11-24/a.jpg", imagefiles.jpeg())
    with pytest.raises(CrackModelError, match=r"no uploads in .*incoming/2026-11-42: nothing to score"):
        score_batch(str(tmp_path), "2026-11-42", model_dir)
    _validate_manifest_of(store, "2026-11-42")  # validate first: it fails, and writes an empty manifest
    with pytest.raises(CrackModelError, match=r"no uploads in .*incoming/2026-11-42: nothing to score"):
        score_batch(str(tmp_path), "2026-11-42", model_dir)
    assert not store.exists(layout.results_key("2026-11-42", layout.SUCCESS))


def test_batch_uri_and_shard_errors():
    """Malformed batch URIs and shards are user errors with the expected form in the message."""
    with pytest.raises(CrackModelError, match="incoming/<batch_id>"):
        layout.parse_batch_uri("s3://bucket/uploads/b1")
    with pytest.raises(CrackModelError, match="names no bucket"):  # not a local folder named "s3:"
        layout.parse_batch_uri("s3://incoming/b1")
    assert layout.parse_batch_uri("s3://bkt/p?q#r/incoming/b1/") == ("s3://bkt/p?q#r", "b1")
    assert layout.parse_batch_uri("file:///incoming/b1") == ("file:///", "b1")
    assert layout.parse_batch_uri("/incoming/b1") == ("/", "b1")
    assert layout.parse_batch_uri("incoming/b1") == (".", "b1")
    with pytest.raises(CrackModelError, match="INDEX/COUNT"):
        layout.Shard.parse("first")
    with pytest.raises(CrackModelError, match="invalid shard"):
        layout.Shard.parse("3/3")


def test_shards_partition_keys():
    """Each key belongs to exactly one shard."""
    keys = [f"incoming/b1/{index}.jpg" for index in range(200)]
    owners = [[shard for shard in range(4) if layout.Shard(shard, 4).owns(key)] for key in keys]
    assert all(len(owner) == 1 for owner in owners)
    assert {owner[0] for owner in owners} == {0, 1, 2, 3}


def test_copying_a_batch_keeps_results_apart(tmp_path, synth_data, model_dir):
    """Two batches in one store do not see each other's uploads (b1 vs b10)."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, "b1", count=2)
    upload_synth(store, synth_data, "b10", count=3)
    score_batch(str(tmp_path), "b1", model_dir)
    assert len(read_predictions(store, "b1")) == 4
    assert not store.exists("results/b10/_SUCCESS")


def test_quarantined_objects_are_skipped_but_listed(tmp_path, synth_data, model_dir):
    """Objects validation held back are not scored, yet each has a row with its reasons, size and SHA-256."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    held = "incoming/b1/positive/synth_00000.jpg"
    manifest = QuarantineManifest("b1", "passed_with_quarantine", "2026-11-24T02:00:00Z",
                                  [{"key": held, "reasons": ["decodes: corrupt"]}])  # fmt: skip
    manifest.write(store, "quarantine/b1/quarantine.json")
    report = score_batch(str(tmp_path), "b1", model_dir)
    assert report.images == 3
    rows = {row["key"]: row for row in read_predictions(store)}
    assert len(rows) == 4
    assert rows[held]["status"] == "quarantined" and rows[held]["error"] == "decodes: corrupt"
    held_bytes = store.read(held)
    assert (rows[held]["size"], rows[held]["sha256"]) == (str(len(held_bytes)), hashlib.sha256(held_bytes).hexdigest())
    summary = json.loads(store.read(layout.results_key("b1", layout.SUMMARY)))
    assert summary["status_counts"] == {"ok": 3, "quarantined": 1}
    assert summary["threshold"] == pytest.approx(load_scorer(model_dir).card.threshold)


def _validate_manifest_of(store, batch_id="b1"):
    """Write the validated manifest the way validation does: key, size, sha256, listing version of every upload."""
    import hashlib

    from crack_model.core.uploads import ManifestEntry, list_uploads, write_manifest

    entries = []
    for info in list_uploads(store, batch_id):
        data = store.read(info.key)
        entries.append(ManifestEntry(info.key, len(data), hashlib.sha256(data).hexdigest(), info.version))
    write_manifest(store, batch_id, entries)


def test_scoring_uses_the_validated_manifest(tmp_path, synth_data, model_dir):
    """A file swapped after validation is status=changed and unscored; one added later waits and is counted."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    swapped = "incoming/b1/positive/synth_00000.jpg"
    store.write(swapped, imagefiles.jpeg())  # replaced after validation
    store.write("incoming/b1/late.jpg", imagefiles.jpeg())  # added after validation

    score_batch(str(tmp_path), "b1", model_dir)

    rows = {row["key"]: row for row in read_predictions(store)}
    assert rows[swapped]["status"] == "changed" and rows[swapped]["crack_probability"] == ""
    assert "changed after validation" in rows[swapped]["error"]
    assert "incoming/b1/late.jpg" not in rows
    summary = json.loads(store.read(layout.results_key("b1", layout.SUMMARY)))
    assert summary["late_objects"] == 1 and summary["status_counts"] == {"changed": 1, "ok": 3}


def test_a_batch_validated_again_scores_only_its_new_uploads(tmp_path, synth_data, model_dir):
    """After a late upload is validated, the complete batch is reopened: the new key is scored, old rows kept."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    score_batch(str(tmp_path), "b1", model_dir)
    first = {row["key"]: row for row in read_predictions(store)}
    store.write("incoming/b1/late.jpg", imagefiles.jpeg())
    _validate_manifest_of(store)

    report = score_batch(str(tmp_path), "b1", model_dir)

    assert not report.already_complete and report.images == 1 and report.skipped_already_done == 4
    rows = {row["key"]: row for row in read_predictions(store)}
    assert set(rows) == {*first, "incoming/b1/late.jpg"}
    assert all(rows[key]["scored_at"] == first[key]["scored_at"] for key in first)  # not rescored
    summary = json.loads(store.read(layout.results_key("b1", layout.SUMMARY)))
    assert summary["late_objects"] == 0


def test_the_summary_counts_every_attempts_parts(tmp_path, synth_data, model_dir, monkeypatch):
    """A shard that died after writing parts and then resumed: the summary counts the images of both attempts."""
    import crack_model.serving.batch as batch_module

    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    real_score_images = batch_module.score_images

    def dies_after_two(*args, **kwargs):
        for number, score in enumerate(real_score_images(*args, **kwargs)):
            if number == 2:
                raise RuntimeError("worker killed")
            yield score

    monkeypatch.setattr(batch_module, "score_images", dies_after_two)
    with pytest.raises(RuntimeError, match="worker killed"):
        score_batch(str(tmp_path), "b1", model_dir, part_rows=1)
    monkeypatch.setattr(batch_module, "score_images", real_score_images)

    report = score_batch(str(tmp_path), "b1", model_dir, part_rows=1)

    assert report.images == 4  # the resumed attempt scored the rest
    summary = json.loads(store.read(layout.results_key("b1", layout.SUMMARY)))
    assert summary["objects"] == 6 and summary["throughput_images_per_second"] is not None
    done_key = next(info.key for info in store.list("results/b1/_parts/") if info.key.endswith("_DONE"))
    assert json.loads(store.read(done_key))["images"] == 6  # 2 from the killed attempt + 4 resumed


@pytest.mark.parametrize(("explicit", "expected"), [(None, 2), (5, 5)])
def test_a_folder_is_fetched_with_two_threads_unless_told(tmp_path, synth_data, model_dir, monkeypatch, explicit,
                                                          expected):  # fmt: skip
    """Reads from a folder take microseconds: by default 2 threads fetch them (8 only took turns at the GIL)."""
    from crack_model.serving import batch

    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    asked = []
    real = batch.score_images

    def recording(*args, **kwargs):
        asked.append(kwargs["workers"])
        return real(*args, **kwargs)

    monkeypatch.setattr(batch, "score_images", recording)
    report = score_shard(str(tmp_path), "b1", model_dir, workers=explicit)
    assert asked == [expected]
    assert report.images == len(list(store.list("incoming/b1/"))) > 0


def test_names_with_line_breaks_quotes_and_commas_keep_their_rows(tmp_path, model_dir):
    """An upload named with "\\r" was written bare into the CSVs with "\\n" endings (Python 3.11 quotes "\\r"
    only when it is in the line terminator), and reading the part back sank the whole batch."""
    store = LocalStore(tmp_path)
    names = ["cr\rname.jpg", "lf\nname.jpg", 'quote"comma,name.jpg', "tab\tname.jpg", "plain.jpg"]
    for name in names:
        store.write(f"incoming/b1/{name}", imagefiles.jpeg())
    _validate_manifest_of(store)  # the upload manifest is a CSV too, read back by scoring
    score_batch(str(tmp_path), "b1", model_dir, part_rows=2)
    store.write("incoming/b1/late\r.jpg", imagefiles.jpeg())
    _validate_manifest_of(store)

    report = score_batch(str(tmp_path), "b1", model_dir, part_rows=2)  # reads the parts written above

    assert report.skipped_already_done == len(names) and report.images == 1
    rows = read_predictions(store)
    assert sorted(row["key"] for row in rows) == sorted(f"incoming/b1/{name}" for name in [*names, "late\r.jpg"])
    assert {row["status"] for row in rows} == {"ok"}


def _cut_short(tiles):
    return [tile[:-1] for tile in tiles]


def _out_of_memory(tiles):
    raise MemoryError


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (_cut_short, "unexpected RuntimeError"),  # a tile of the wrong shape: a fault of ours
        (_out_of_memory, "ran out of memory; the file is kept: run the batch again"),  # MemoryError() says nothing
    ],
)
def test_a_fault_tiling_one_image_costs_that_image_only(tmp_path, synth_data, model_dir, monkeypatch, fault, reason):
    """A fault in tiling one image (here forced) is that image's error row, with a reason that says what happened;
    the rest of the batch is scored."""
    from crack_model.serving import inference

    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    store.write("incoming/b1/odd.jpg", imagefiles.jpeg(64, 47))
    real = inference.cut_tiles

    def cut_with_fault(image, boxes, size):
        tiles = real(image, boxes, size)
        return fault(tiles) if image.height == 47 else tiles

    monkeypatch.setattr(inference, "cut_tiles", cut_with_fault)
    monkeypatch.setattr(inference, "decodes_fast", lambda header: False)  # every image through Pillow
    score_batch(str(tmp_path), "b1", model_dir)

    rows = {row["key"]: row for row in read_predictions(store)}
    assert rows["incoming/b1/odd.jpg"]["status"] == "error"
    assert reason in rows["incoming/b1/odd.jpg"]["error"], rows["incoming/b1/odd.jpg"]
    assert [row["status"] for key, row in rows.items() if key != "incoming/b1/odd.jpg"] == ["ok"] * 4


def test_running_out_of_memory_reading_an_upload_says_so_in_its_row():
    """A MemoryError while fetching carries no message: the row says what happened and what to do."""
    from crack_model.core.tiling import TileConfig
    from crack_model.serving.inference import fetch_object

    def fetch(key):
        raise MemoryError

    fetched = fetch_object("incoming/b1/huge.jpg", fetch, 224, TileConfig(), 80_000_000)
    assert fetched.score.status == "error"
    assert fetched.score.error.startswith("cannot read: the worker ran out of memory; the file is kept"), fetched.score


def test_a_jpeg_over_the_pixel_limit_is_scored_from_a_reduced_decode(model_dir):
    """What the limit counts is what a decode holds: a JPEG shrunk to its tile budget is decoded reduced; one the
    tiles want whole is scored no larger than a reduced decode gives (it was refused, so a larger budget turned
    the 100 MP photos 512 tiles scored into errors); a PNG (which cannot be decoded reduced) over the limit is
    refused."""
    from crack_model.core.tiling import TileConfig
    from crack_model.serving.inference import score_images

    files = {
        "big.jpg": imagefiles.jpeg(1600, 1200),
        "big.png": imagefiles.encode(imagefiles.gradient_rgb(1600, 1200), "PNG"),
    }
    scorer = load_scorer(model_dir)

    def scored(max_tiles):
        tiles = TileConfig(tile_size=scorer.card.tile_size, max_tiles=max_tiles)
        return {score.key: score for score in score_images(files, files.__getitem__, scorer, tiles=tiles,
                                                           max_pixels=1_000_000)}  # fmt: skip

    budget = scored(12)  # 1600x1200 needs 63 tiles: shrunk to fit 12
    big = budget["big.jpg"]
    assert big.status == "ok" and (big.width, big.height) == (1600, 1200) and big.note.startswith("Downscaled"), big
    assert (min(box[0] for box in big.boxes), min(box[1] for box in big.boxes)) == (0, 0)
    assert (max(box[2] for box in big.boxes), max(box[3] for box in big.boxes)) == (1600, 1200)  # no padding
    assert budget["big.png"].status == "error" and "too large" in budget["big.png"].error
    whole = scored(512)["big.jpg"]  # tiled at full size, it would need a full decode, over the limit
    assert whole.status == "ok" and "to 800x600 to stay within the 1,000,000-pixel decode limit" in whole.note, whole
    assert (max(box[2] for box in whole.boxes), max(box[3] for box in whole.boxes)) == (1600, 1200)
    assert len(big.boxes) <= 12 < whole.tile_count == len(whole.boxes)  # at half size: more than 12 tiles


def test_a_manifest_digest_depends_on_the_rows_not_on_their_quoting(tmp_path):
    """Manifests written before every CSV field was quoted keep their digest: the night that validated a batch
    before the upgrade and the one after see the same batch (a changed digest reopens complete batches)."""
    import hashlib

    from crack_model.core.uploads import ManifestEntry, manifest_digest, manifest_key, write_manifest

    store = LocalStore(tmp_path)
    old_format = b"key,size,sha256\nincoming/b1/a b.jpg,12,abc\nincoming/b1/c.jpg,,\n"
    store.write(manifest_key("b1"), old_format)
    before = manifest_digest(store, "b1")
    assert before == hashlib.sha256(old_format).hexdigest()[:16]  # what the code of the time computed
    write_manifest(
        store, "b1", [ManifestEntry("incoming/b1/c.jpg", None, None), ManifestEntry("incoming/b1/a b.jpg", 12, "abc")]
    )
    assert store.read(manifest_key("b1")) != old_format and manifest_digest(store, "b1") == before
    write_manifest(store, "b1", [ManifestEntry("incoming/b1/a b.jpg", 13, "abc")])
    assert manifest_digest(store, "b1") != before


def test_an_upload_over_the_size_limit_is_a_row_and_is_never_read(tmp_path, metu_sample, model_dir, loaded_keys):
    """A file over the upload limit (sparse: no disk used) is refused by its size, never loaded, in validation and
    scoring alike, so one huge upload cannot exhaust a worker's memory; the photos beside it are validated and
    scored."""
    from crack_model.core.uploads import MAX_UPLOAD_BYTES
    from crack_model.quality.batch_validation import validate_batch
    from crack_model.quality.thresholds import ValidationThresholds

    store = LocalStore(tmp_path)
    for class_name in ("Positive", "Negative"):
        for path in sorted((metu_sample / class_name).glob("*.jpg"))[:3]:
            store.write(f"incoming/b1/{path.name}", path.read_bytes())
    with (tmp_path / "incoming" / "b1" / "scan.tif").open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)

    outcome = validate_batch(str(tmp_path), "b1", thresholds=ValidationThresholds(max_bad_fraction=0.5))
    score_batch(str(tmp_path), "b1", model_dir, overlays=False)

    assert "incoming/b1/scan.tif" not in loaded_keys
    assert outcome.outcome != "failed", outcome.reasons
    rows = {row["key"]: row for row in read_predictions(store)}
    assert len(rows) == 7 and [key for key, row in rows.items() if row["status"] != "ok"] == ["incoming/b1/scan.tif"]
    assert f"too large: {MAX_UPLOAD_BYTES + 1:,} bytes, over the limit" in rows["incoming/b1/scan.tif"]["error"]
    [held] = json.loads(store.read("quarantine/b1/quarantine.json"))["objects"]
    assert held["key"] == "incoming/b1/scan.tif" and held["quarantine_error"].startswith("not copied: too large: ")


def test_an_upload_over_the_size_limit_by_the_time_it_is_read_is_a_row_and_is_never_read(
    tmp_path, metu_sample, model_dir, loaded_keys, monkeypatch
):
    """The limit holds for what a read opens, not only for the listing: an upload listed small and replaced by a
    file over the limit before it is read (sparse: no disk used) is refused unread, by validation's profile and
    by scoring alike, and the photos beside it are scored."""
    from dataclasses import replace

    from crack_model.core.uploads import MAX_UPLOAD_BYTES
    from crack_model.quality.profile import profile_batch

    store = LocalStore(tmp_path)
    for path in sorted((metu_sample / "Positive").glob("*.jpg"))[:2]:
        store.write(f"incoming/b1/{path.name}", path.read_bytes())
    with (tmp_path / "incoming" / "b1" / "scan.tif").open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)
    real_list = LocalStore.list

    def listed_before_it_grew(self, prefix=""):
        for info in real_list(self, prefix):
            yield replace(info, size=5) if info.key.endswith("scan.tif") else info

    monkeypatch.setattr(LocalStore, "list", listed_before_it_grew)
    too_large = f"too large: {MAX_UPLOAD_BYTES + 1:,} bytes, over the limit"

    profile = profile_batch(store, "b1").set_index("key")
    score_batch(str(tmp_path), "b1", model_dir, overlays=False)

    assert too_large in profile.loc["incoming/b1/scan.tif", "decode_error"]
    assert profile["decodable"].sum() == 2
    rows = {row["key"]: row for row in read_predictions(store)}
    assert [key for key, row in rows.items() if row["status"] != "ok"] == ["incoming/b1/scan.tif"] and len(rows) == 3
    assert too_large in rows["incoming/b1/scan.tif"]["error"]
    assert "incoming/b1/scan.tif" not in loaded_keys


@pytest.mark.parametrize("earlier_attempt", ["finished", "killed"])
def test_a_shard_scored_with_another_runtime_is_scored_again(tmp_path, synth_data, model_dir, earlier_attempt):
    """A night re-run with another runtime (the DAG's ``runtime`` param) must not merge the first try's rows: a
    batch's rows all come from one runtime."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    score_shard(str(tmp_path), "b1", model_dir, finalize=False, runtime="litert-fp32", part_rows=2)
    if earlier_attempt == "killed":  # its parts stay, its _DONE marker never came
        (done,) = [info.key for info in store.list("results/") if info.key.endswith(layout.DONE)]
        store.delete(done)
    report = score_shard(str(tmp_path), "b1", model_dir, runtime="keras")
    assert report.images == 6 and report.finalized
    rows = read_predictions(store)
    assert len(rows) == 6 and {row["runtime"] for row in rows} == {"keras"}
