"""Copies of held-back uploads: within a memory budget, and of the bytes that were judged."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import unicodedata
from pathlib import Path

import pytest

from crack_model.core.documents import QuarantineManifest
from crack_model.core.layout import QUARANTINE_MANIFEST, quarantine_key
from crack_model.core.local_store import LocalStore
from crack_model.quality import batch_validation, quarantine
from crack_model.quality.batch_validation import validate_batch
from crack_model.quality.outcome import PASSED_WITH_QUARANTINE

BAD = 3  # not images: held back, within the 5 % a batch may lose


class WatchedStore(LocalStore):
    """Counts the bytes of uploads read by the copying threads and not yet written as copies; can replace one
    upload right after its first read (the profile's), as an uploader overwriting it mid-validation would."""

    def __init__(self, root: Path, replace_after_first_read: str | None = None) -> None:
        super().__init__(root)
        self.held = self.most_held = 0
        self.guard = threading.Lock()
        self.replace_after_first_read = replace_after_first_read

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        data = super().read(key, max_bytes=max_bytes)
        if key == self.replace_after_first_read:
            self.replace_after_first_read = None
            self.write(key, b"other bytes, uploaded after the first read")
        if threading.current_thread().name.startswith("quarantine"):
            with self.guard:
                self.held += len(data)
                self.most_held = max(self.most_held, self.held)
            time.sleep(0.05)  # a slow store: without a budget, every thread holds an upload at once
        return data

    def write(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        super().write(key, data, content_type=content_type)
        if key.startswith("quarantine/") and threading.current_thread().name.startswith("quarantine"):
            with self.guard:
                self.held -= len(data)


def batch(root: Path, metu_sample: Path, bad_size: int) -> None:
    folder = root / "incoming" / "b1"
    folder.mkdir(parents=True)
    for index, path in enumerate(sorted((metu_sample / "Negative").glob("*.jpg"))[:120:2]):
        (folder / f"photo-{index:02d}.jpg").write_bytes(path.read_bytes())
    for index in range(BAD):
        (folder / f"scan-{index}.jpg").write_bytes(bytes([index]) * bad_size)


def copies(store: LocalStore) -> dict[str, dict]:
    manifest = QuarantineManifest.read(store, quarantine_key("b1", QUARANTINE_MANIFEST))
    return {item["key"].rsplit("/", 1)[-1]: item for item in manifest.objects}


def test_held_back_uploads_are_copied_within_the_byte_budget(tmp_path, metu_sample, monkeypatch):
    """What is held back is often the largest files: eight 640 MB scans copied at once would be 5 GB in a
    1 GiB worker. The copies share a budget, as profiling does (here 1.5 uploads' worth: one at a time)."""
    batch(tmp_path, metu_sample, bad_size=100_000)
    store = WatchedStore(tmp_path)
    monkeypatch.setattr(batch_validation, "open_store", lambda uri: store)
    monkeypatch.setattr(quarantine, "COPY_BYTES_IN_FLIGHT", 150_000)

    outcome = validate_batch(str(tmp_path), "b1")

    assert outcome.outcome == PASSED_WITH_QUARANTINE and len(outcome.quarantined) == BAD
    assert all(item.get("quarantine_key") for item in copies(store).values())
    assert store.most_held == 100_000


def test_an_upload_replaced_after_it_was_judged_is_not_copied(tmp_path, metu_sample, monkeypatch):
    """The copy is the evidence of why it was held back: other bytes must not stand in for the judged ones."""
    batch(tmp_path, metu_sample, bad_size=1_000)
    store = WatchedStore(tmp_path, replace_after_first_read="incoming/b1/scan-1.jpg")
    monkeypatch.setattr(batch_validation, "open_store", lambda uri: store)

    validate_batch(str(tmp_path), "b1")

    held = copies(store)
    assert held["scan-1.jpg"]["quarantine_error"] == (
        "not copied: the upload was replaced after it was judged; validate again"
    )
    assert "quarantine_key" not in held["scan-1.jpg"] and held["scan-1.jpg"]["reasons"]
    assert store.read(held["scan-0.jpg"]["quarantine_key"]) == bytes([0]) * 1_000


@pytest.fixture(autouse=True)
def _no_gx_docs(monkeypatch):
    """Data Docs are not what these tests are about (they take seconds per batch)."""
    monkeypatch.setattr(batch_validation, "write_data_docs", lambda *args, **kwargs: {"index": None})


def test_a_copy_of_an_earlier_run_is_kept_when_the_upload_is_replaced_by_other_bad_bytes(tmp_path, metu_sample):
    """Nothing is deleted: night 2's copy of other bytes takes the name with its digest, and quarantine.json says so."""
    batch(tmp_path, metu_sample, bad_size=1_000)
    store = LocalStore(tmp_path)
    validate_batch(str(tmp_path), "b1")
    first = store.read(copies(store)["scan-1.jpg"]["quarantine_key"])
    replaced = b"other broken bytes"
    (tmp_path / "incoming" / "b1" / "scan-1.jpg").write_bytes(replaced)

    validate_batch(str(tmp_path), "b1")
    validate_batch(str(tmp_path), "b1")  # the same bytes again: their copy is found, not written a third time

    digest = hashlib.sha256(replaced).hexdigest()
    assert store.read("quarantine/b1/uploads/scan-1.jpg") == first == bytes([1]) * 1_000
    assert copies(store)["scan-1.jpg"]["quarantine_key"] == f"quarantine/b1/uploads/scan-1.{digest[:16]}.jpg"
    assert store.read(f"quarantine/b1/uploads/scan-1.{digest[:16]}.jpg") == replaced
    assert sorted(store.files("quarantine/b1/uploads")) == sorted(
        [f"scan-{index}.jpg" for index in range(BAD)] + [f"scan-1.{digest[:16]}.jpg"]
    )
    assert copies(store)["scan-0.jpg"]["quarantine_key"] == "quarantine/b1/uploads/scan-0.jpg"


def test_a_decomposed_name_beside_its_composed_twin_is_held_back_without_a_copy_of_the_twins_bytes(
    tmp_path, metu_sample
):
    """The store reads a decomposed (NFD) name through its NFC twin's file: no copy, and the reason why."""
    batch(tmp_path, metu_sample, bad_size=1_000)
    folder = tmp_path / "incoming" / "b1"
    (folder / "scan-2.jpg").unlink()  # the batch stays within the share it may lose
    photos = sorted((metu_sample / "Positive").glob("*.jpg"))
    (folder / unicodedata.normalize("NFC", "café.jpg")).write_bytes(photos[0].read_bytes())
    (folder / unicodedata.normalize("NFD", "café.jpg")).write_bytes(photos[1].read_bytes())
    store = LocalStore(tmp_path)

    validate_batch(str(tmp_path), "b1")

    manifest = QuarantineManifest.read(store, quarantine_key("b1", QUARANTINE_MANIFEST))
    (held,) = [item for item in manifest.objects if "caf" in item["key"]]
    assert not unicodedata.is_normalized("NFC", held["key"]) and "quarantine_key" not in held
    assert held["quarantine_error"].startswith("not copied: a file with the same name in composed Unicode (NFC)")
    assert not store.exists("quarantine/b1/uploads/café.jpg")


def test_a_name_that_is_not_utf8_is_held_back_with_the_listings_reason_not_a_key_rule(tmp_path, metu_sample):
    """quarantine.json said "not copied: ... NUL and backslash are not allowed", a rule about the name's escaped
    rendering, where the listing had said what to do: rename it in UTF-8."""
    batch(tmp_path, metu_sample, bad_size=1_000)
    folder = tmp_path / "incoming" / "b1"
    (folder / "scan-2.jpg").unlink()  # the batch stays within the share it may lose
    photo = sorted((metu_sample / "Positive").glob("*.jpg"))[0]
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.jpg"), "wb") as handle:
        handle.write(photo.read_bytes())
    store = LocalStore(tmp_path)

    validate_batch(str(tmp_path), "b1")

    manifest = QuarantineManifest.read(store, quarantine_key("b1", QUARANTINE_MANIFEST))
    (held,) = [item for item in manifest.objects if "caf" in item["key"]]
    assert held["quarantine_error"] == (
        "not copied: the name is not valid UTF-8 (written in another encoding?); rename it with a UTF-8 name"
    )
