"""Tile scores: one compact JSON line per scored image, found again by key."""

from __future__ import annotations

import hashlib

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.serving.inference import ImageScore
from crack_model.serving.tile_scores import encode, find_tile_scores, iter_tile_scores, tile_score_files


def scored(key: str, boxes, probabilities) -> ImageScore:
    sha256 = hashlib.sha256(key.encode()).hexdigest()  # stands for the scored bytes' hash
    return ImageScore(key=key, sha256=sha256, boxes=boxes, tile_probabilities=probabilities, tile_count=len(boxes))


def test_lines_round_trip_and_error_rows_have_none(tmp_path):
    """Boxes and probabilities come back as written (to 6 decimals); an error row writes no line."""
    store = LocalStore(tmp_path)
    photo = scored('incoming/b/ph\u00f6to "1".jpg', [(0, 0, 227, 227), (170, 0, 397, 227)], [0.1234567, 0.9])
    patch = scored("incoming/b/patch.jpg", [(0, 0, 227, 227)], [0.5])
    broken = ImageScore(key="incoming/b/broken.jpg", status="error", error="truncated")
    store.write("p/part-000000.tiles.jsonl", encode([photo, broken]))
    store.write("p/part-000001.tiles.jsonl", encode([patch]))
    store.write("p/part-000001.csv", b"key,status\nincoming/b/patch.jpg,ok\n")
    files = tile_score_files(store, "p/")
    assert files == ["p/part-000000.tiles.jsonl", "p/part-000001.tiles.jsonl"]
    found = {scores.key: scores for scores in iter_tile_scores(store, files)}
    assert set(found) == {photo.key, patch.key}
    assert found[photo.key].boxes == photo.boxes and found[photo.key].probabilities == [0.123457, 0.9]
    assert found[photo.key].sha256 == photo.sha256 and found[patch.key].sha256 == patch.sha256
    assert find_tile_scores(store, files, patch.key) == found[patch.key]
    assert find_tile_scores(store, files, broken.key) is None
    assert [scores.key for scores in iter_tile_scores(store, files, {patch.key})] == [patch.key]


class CountingStore(LocalStore):
    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        self.reads.append(key)
        return super().read(key, max_bytes=max_bytes)


def test_a_lookup_reads_only_the_tile_scores_of_the_part_that_scored_the_image(tmp_path):
    """A part's rows say whether it scored the image: the other parts' tile scores (twenty times the size of
    their rows on full-size photos) are not read. A part without rows (killed between the writes) is read."""
    store = CountingStore(tmp_path)
    for index, name in enumerate(["a", "b", "c"]):
        key = f"incoming/b/{name}.jpg"
        store.write(f"p/part-{index:06d}.tiles.jsonl", encode([scored(key, [(0, 0, 10, 10)], [0.9])]))
        store.write(f"p/part-{index:06d}.csv", f"key,status\n{key},ok\n".encode())
    store.write("p/part-000003.tiles.jsonl", encode([scored("incoming/b/d.jpg", [(0, 0, 10, 10)], [0.9])]))
    store.write("p/part-000004.csv", b"key,status\nincoming/b/a.jpg,error\n")  # a's later row: unreadable bytes
    store.write("p/part-000004.tiles.jsonl", b"")
    files = tile_score_files(store, "p/")

    assert find_tile_scores(store, files, "incoming/b/a.jpg").key == "incoming/b/a.jpg"
    tiles_read = [key for key in store.reads if key.endswith(".tiles.jsonl")]
    assert tiles_read == ["p/part-000003.tiles.jsonl", "p/part-000000.tiles.jsonl"]
    store.reads.clear()
    assert find_tile_scores(store, files, "incoming/b/d.jpg").key == "incoming/b/d.jpg"
    assert find_tile_scores(store, files, "incoming/b/zz.jpg") is None


def test_a_lookup_finds_an_image_whose_name_holds_quotes_and_commas(tmp_path):
    """Rows are stored with every field quoted, a quote doubled: the raw name is not in the part's text."""
    from crack_model.serving.batch_results import rows_to_csv

    store = LocalStore(tmp_path)
    key = 'incoming/b/site "north", wall\n2.jpg'
    store.write("p/part-000000.tiles.jsonl", encode([scored(key, [(0, 0, 10, 10)], [0.9])]))
    store.write("p/part-000000.csv", rows_to_csv([{"key": key, "status": "ok"}]))
    assert find_tile_scores(store, tile_score_files(store, "p/"), key).key == key


def test_a_broken_line_names_its_file(tmp_path):
    """A damaged line is a CrackModelError naming the file; lines of other keys are not even parsed by a lookup."""
    store = LocalStore(tmp_path)
    good = encode([scored("incoming/b/a.jpg", [(0, 0, 10, 10)], [0.2])])
    store.write(
        "p/part-000000.tiles.jsonl", b'{"key":"incoming/b/z.jpg","boxes":[1,2,3],"probabilities":[0.1]}\n' + good
    )
    files = tile_score_files(store, "p/")
    assert find_tile_scores(store, files, "incoming/b/a.jpg").sha256 == hashlib.sha256(b"incoming/b/a.jpg").hexdigest()
    with pytest.raises(CrackModelError, match=r"part-000000\.tiles\.jsonl: 3 box values for 1 tiles"):
        find_tile_scores(store, files, "incoming/b/z.jpg")
    with pytest.raises(CrackModelError, match=r"3 box values"):
        list(iter_tile_scores(store, files))


@pytest.mark.parametrize("sha256", ['""', "123", '["x"]', '"' + "0" * 63 + '"'])
def test_a_line_whose_sha256_is_not_one_is_broken(tmp_path, sha256):
    """A damaged hash must not switch off the overlay's check that the upload is still what was scored."""
    store = LocalStore(tmp_path)
    store.write(
        "p/part-000000.tiles.jsonl", b'{"key":"a.jpg","sha256":%b,"boxes":[],"probabilities":[]}\n' % sha256.encode()
    )
    with pytest.raises(CrackModelError, match=r"part-000000\.tiles\.jsonl: .* is not a SHA-256"):
        find_tile_scores(store, ["p/part-000000.tiles.jsonl"], "a.jpg")


def test_each_line_keeps_the_tile_budget_its_image_was_scored_within(tmp_path):
    """The budget a batch was scored with is kept with its tile scores; a line from before it was kept is 512."""
    from crack_model.core.documents import ShardStats
    from crack_model.serving.tile_scores import budgets_used

    store = LocalStore(tmp_path)
    photo = scored("incoming/b/drone.jpg", [(0, 0, 227, 227), (170, 0, 397, 227)], [0.2, 0.9])
    store.write("p/part-000000.tiles.jsonl", encode([photo], max_tiles=2048))
    assert find_tile_scores(store, ["p/part-000000.tiles.jsonl"], photo.key).max_tiles == 2048
    old = b'{"key":"incoming/b/old.jpg","boxes":[0,0,227,227],"probabilities":[0.5]}\n'
    store.write("p/part-000001.tiles.jsonl", old)
    assert find_tile_scores(store, ["p/part-000001.tiles.jsonl"], "incoming/b/old.jpg").max_tiles == 512
    assert budgets_used(store, "p", None) == {512, 2048}
    # A key cannot pass for a budget: JSON escapes the quote that would close the pattern.
    trick = scored('incoming/b/a"max_tiles":64.jpg', [(0, 0, 227, 227)], [0.1])
    store.write("q/part-000000.tiles.jsonl", encode([trick], max_tiles=1024))
    assert budgets_used(store, "q", None) == {1024}
    # A finished shard's marker says it without reading its parts; one from before the budget was kept: 512.
    marker = ShardStats(images=1, seconds=1.0, finished_at="now")
    assert budgets_used(store, "p", marker) == {512}
    marker.max_tiles = 1024
    assert budgets_used(store, "p", marker) == {1024}
