"""The local store stays shut: no symbolic link is followed, any name is listed, long names fit."""

from __future__ import annotations

import io
import os
import unicodedata
from pathlib import Path

import pytest

from crack_model.core import layout
from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.core.object_keys import (
    LONG_NAME_MARKER,
    TEMP_MARKER,
    ObjectInfo,
    ObjectTooLargeError,
    read_within,
    validate_key,
)


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A folder beside the store, with a secret the store must never serve."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.jpg").write_bytes(b"secret")
    return folder


@pytest.fixture()
def store(tmp_path: Path) -> LocalStore:
    """An empty local store with one batch folder."""
    (tmp_path / "store" / "incoming" / "b1").mkdir(parents=True)
    return LocalStore(tmp_path / "store")


def listing(store: LocalStore, prefix: str = "") -> dict[str, ObjectInfo]:
    return {info.key: info for info in store.list(prefix)}


def test_a_symlinked_upload_is_listed_with_a_problem_and_never_read(store, outside):
    """An upload that links to a file outside the store is a listed problem; read, head and exists refuse it."""
    (store.root / "incoming" / "b1" / "evil.jpg").symlink_to(outside / "secret.jpg")
    store.write("incoming/b1/good.jpg", b"good")
    found = listing(store, "incoming/b1/")
    assert sorted(found) == ["incoming/b1/evil.jpg", "incoming/b1/good.jpg"]
    assert "symbolic link" in found["incoming/b1/evil.jpg"].problem
    assert found["incoming/b1/good.jpg"].problem is None
    with pytest.raises(CrackModelError, match="symbolic link"):
        store.read("incoming/b1/evil.jpg")
    assert store.head("incoming/b1/evil.jpg") is None
    assert not store.exists("incoming/b1/evil.jpg")


def test_a_link_to_a_file_inside_the_store_is_refused_too(store):
    """A link is refused wherever it points: the store cannot tell a harmless one from a planted one."""
    store.write("incoming/b1/real.jpg", b"real")
    (store.root / "incoming" / "b1" / "alias.jpg").symlink_to(store.root / "incoming" / "b1" / "real.jpg")
    assert "symbolic link" in listing(store)["incoming/b1/alias.jpg"].problem
    with pytest.raises(CrackModelError, match="symbolic link"):
        store.read("incoming/b1/alias.jpg")


def test_a_symlinked_folder_is_one_problem_and_its_files_are_not_listed(store, outside):
    """A linked folder in a batch is reported once; nothing behind it is listed or readable."""
    (store.root / "incoming" / "b1" / "sub").symlink_to(outside, target_is_directory=True)
    found = listing(store, "incoming/b1")
    assert list(found) == ["incoming/b1/sub"]
    assert "symbolic link" in found["incoming/b1/sub"].problem
    with pytest.raises(CrackModelError, match="symbolic link"):
        store.read("incoming/b1/sub/secret.jpg")
    assert not store.exists("incoming/b1/sub/secret.jpg")
    assert [info.problem is not None for info in store.list("incoming/b1/sub/")] == [True]


def test_a_symlinked_batch_folder_is_not_a_new_batch(store, outside):
    """folders() leaves linked folders out, so a link under incoming/ never becomes a batch."""
    (store.root / "incoming" / "linked").symlink_to(outside, target_is_directory=True)
    assert store.folders("incoming") == ["b1"]
    assert store.folders("incoming/linked") == []


def test_writes_never_follow_a_symlinked_results_folder_out_of_the_root(store, outside):
    """A linked results/ folder makes writes fail with a reason; nothing lands outside the root."""
    (store.root / "results").symlink_to(outside, target_is_directory=True)
    with pytest.raises(CrackModelError, match="symbolic link"):
        store.write("results/b1/predictions.csv", b"rows")
    with pytest.raises(CrackModelError, match="symbolic link"):
        store.write_if_match("results/secret.jpg", b"rows", None)
    with pytest.raises(CrackModelError, match="symbolic link"):
        store.delete("results/secret.jpg")
    assert sorted(path.name for path in outside.iterdir()) == ["secret.jpg"]
    assert (outside / "secret.jpg").read_bytes() == b"secret"


def test_writing_over_a_symlinked_object_replaces_the_link_not_its_target(store, outside):
    """Writing a key that is a link puts a real file there; the file the link pointed at is untouched."""
    link = store.root / "incoming" / "b1" / "evil.jpg"
    link.symlink_to(outside / "secret.jpg")
    store.write("incoming/b1/evil.jpg", b"new")
    assert not link.is_symlink()
    assert store.read("incoming/b1/evil.jpg") == b"new"
    assert (outside / "secret.jpg").read_bytes() == b"secret"


def name_of_bytes(size: int, suffix: str = ".jpg") -> str:
    """A name of exactly ``size`` UTF-8 bytes, mostly two-byte characters."""
    stem_bytes = size - len(suffix)
    return "ü" * (stem_bytes // 2) + "x" * (stem_bytes % 2) + suffix


@pytest.mark.parametrize("name", ["a" * 216 + ".jpg", name_of_bytes(250), name_of_bytes(256), name_of_bytes(1000)])
def test_long_names_round_trip(store, name):
    """220-character, 250-byte and 1,000-byte names: write, list, read, head, exists, conditional write, delete."""
    key = f"incoming/b1/{name}"
    store.write(key, b"data")
    assert [info.key for info in store.list("incoming/b1/")] == [key]
    assert store.read(key) == b"data"
    assert store.head(key).size == 4
    assert store.exists(key)
    store.write_if_match(key, b"more", store.head(key).etag)
    assert store.read(key) == b"more"
    assert all(len(os.fsencode(path.name)) <= 255 for path in (store.root / "incoming" / "b1").iterdir())
    store.delete(key)
    assert not store.exists(key)
    assert list(store.list("incoming/b1/")) == []
    left = [path.name for path in (store.root / "incoming" / "b1").iterdir()]
    assert [name for name in left if not name.startswith(f"{TEMP_MARKER}lock-")] == []  # no side file left behind


def test_a_long_folder_name_round_trips(store):
    """A 600-byte folder segment is stored hashed; its files list and read under the original key."""
    key = f"incoming/b1/{name_of_bytes(600, '')}/photo.jpg"
    store.write(key, b"data")
    assert [info.key for info in store.list("incoming/b1/")] == [key]
    assert store.read(key) == b"data"
    assert store.folders("incoming/b1") == [name_of_bytes(600, "")]


def test_long_names_keep_their_extension_and_a_readable_start_on_disk(store):
    """The hashed file name starts like the original and ends in its extension, so an operator can find it."""
    store.write(f"incoming/b1/{'a' * 300}.jpg", b"data")
    names = sorted(path.name for path in (store.root / "incoming" / "b1").iterdir())
    assert len(names) == 2
    assert names[0].startswith(LONG_NAME_MARKER)
    assert names[1].startswith("a" * 100 + "~") and names[1].endswith(".jpg")


def test_a_file_merely_named_like_a_hashed_name_is_listed_as_it_is(store):
    """Without its side file a ``name~<hex>.jpg`` upload is an ordinary upload."""
    name = "photo~0123456789abcdef.jpg"
    (store.root / "incoming" / "b1" / name).write_bytes(b"x")
    assert [(info.key, info.problem) for info in store.list("incoming/b1/")] == [(f"incoming/b1/{name}", None)]


def test_keys_over_1024_bytes_are_refused_with_the_limit(store):
    """A key longer than S3 allows is refused on every backend, naming the limit."""
    with pytest.raises(CrackModelError, match="1024"):
        store.write("incoming/b1/" + "a" * 1013 + ".jpg", b"x")


def test_a_decomposed_name_is_written_under_its_composed_key(store):
    """NFD in, NFC key out: a macOS name and the same name typed elsewhere are one object."""
    decomposed = unicodedata.normalize("NFD", "incoming/b1/Übergang.jpg")
    composed = unicodedata.normalize("NFC", decomposed)
    assert decomposed != composed
    store.write(decomposed, b"data")
    assert [info.key for info in store.list("incoming/b1/")] == [composed]
    assert store.read(composed) == store.read(decomposed) == b"data"
    assert validate_key(decomposed) == composed


def test_a_decomposed_name_put_on_disk_by_another_tool_is_listed_and_read_as_it_is(store):
    """A file rsynced from a Mac keeps its NFD name: it lists as such and reads by that key."""
    decomposed = unicodedata.normalize("NFD", "Übergang.jpg")
    (store.root / "incoming" / "b1" / decomposed).write_bytes(b"mac")
    [info] = store.list("incoming/b1/")
    assert (info.key, info.problem) == (f"incoming/b1/{decomposed}", None)
    assert store.read(info.key) == b"mac"
    assert store.head(info.key).size == 3


def test_a_decomposed_twin_of_a_composed_name_is_a_problem(store):
    """Two files whose names differ only in Unicode form: the NFD one cannot be read by its key, so it is reported."""
    folder = store.root / "incoming" / "b1"
    (folder / unicodedata.normalize("NFC", "é.jpg")).write_bytes(b"composed")
    (folder / unicodedata.normalize("NFD", "é.jpg")).write_bytes(b"decomposed")
    problems = {info.key: info.problem for info in store.list("incoming/b1/")}
    assert problems[f"incoming/b1/{unicodedata.normalize('NFC', 'é.jpg')}"] is None
    assert "NFC" in problems[f"incoming/b1/{unicodedata.normalize('NFD', 'é.jpg')}"]


def test_a_read_within_a_limit_refuses_a_larger_object_without_loading_it(store):
    """The limit is checked on the file a read opens, not on a listing made earlier: a decomposed twin's read gets
    the composed file (over the limit) and refuses it unread; within the limit, the bytes come back."""
    import tracemalloc

    limit = 64 * 2**20
    folder = store.root / "incoming" / "b1"
    with (folder / unicodedata.normalize("NFC", "é.jpg")).open("wb") as handle:
        handle.truncate(limit + 1)  # sparse: no disk used
    (folder / unicodedata.normalize("NFD", "é.jpg")).write_bytes(b"decomposed")
    tracemalloc.start()
    try:
        with pytest.raises(ObjectTooLargeError, match=f"is {limit + 1:,} bytes, over the {limit:,}") as refused:
            store.read(f"incoming/b1/{unicodedata.normalize('NFD', 'é.jpg')}", max_bytes=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.size == limit + 1 and peak < 2**20
    store.write("incoming/b1/a.jpg", b"12345")
    assert store.read("incoming/b1/a.jpg", max_bytes=5) == b"12345"
    with pytest.raises(ObjectTooLargeError):
        store.read("incoming/b1/a.jpg", max_bytes=4)


@pytest.mark.parametrize(
    ("content", "said", "expected"),
    [(b"x" * 12, 10, b"x" * 12), (b"x" * 20, 10, 16)],  # grew within the limit; grew past it: stops at limit + 1
)
def test_an_object_that_grows_while_read_is_read_no_further_than_the_limit(content, said, expected):
    """An object appended to after its size was taken is read on, but never past the limit."""
    if isinstance(expected, bytes):
        assert read_within(io.BytesIO(content), said, 15, "a.jpg") == expected
    else:
        with pytest.raises(ObjectTooLargeError, match=f"a.jpg is {expected} bytes, over the 15"):
            read_within(io.BytesIO(content), said, 15, "a.jpg")


def test_a_download_copies_in_chunks(store, tmp_path, monkeypatch):
    """A download never holds the object in memory whole (the training pool's download of big labeled photos)."""
    monkeypatch.setattr(LocalStore, "read", lambda *args, **kwargs: pytest.fail("download read the object whole"))
    (store.root / "incoming" / "b1" / "big.tif").write_bytes(os.urandom(3 * 2**20))
    store.download("incoming/b1/big.tif", tmp_path / "copy" / "big.tif")
    assert (tmp_path / "copy" / "big.tif").read_bytes() == (store.root / "incoming" / "b1" / "big.tif").read_bytes()


@pytest.mark.parametrize("key", ["incoming/b1/", "incoming/b1/photo.jpg/"])
def test_a_trailing_slash_is_refused_with_a_clear_message(store, key):
    """A key names an object: a trailing '/' is refused, saying to drop it, and nothing is written."""
    with pytest.raises(CrackModelError, match="drop the trailing '/'"):
        validate_key(key)
    with pytest.raises(CrackModelError, match="trailing"):
        store.write(key, b"x")
    assert list(store.list("incoming/")) == []


def test_a_non_utf8_file_name_is_listed_with_a_problem_and_a_printable_key(store):
    """caf\\xe9.jpg (Latin-1 on disk) lists as a printable key with a reason; nothing raises UnicodeEncodeError."""
    folder = store.root / "incoming" / "b1"
    os.close(os.open(os.fsencode(folder) + b"/caf\xe9.jpg", os.O_WRONLY | os.O_CREAT, 0o644))
    store.write("incoming/b1/ok.jpg", b"ok")
    found = listing(store, "incoming/b1/")
    assert sorted(found) == ["incoming/b1/caf\\xe9.jpg", "incoming/b1/ok.jpg"]
    bad = found["incoming/b1/caf\\xe9.jpg"]
    assert "not valid UTF-8" in bad.problem
    assert bad.key.encode("utf-8") == b"incoming/b1/caf\\xe9.jpg"  # printable: a CSV row can hold it
    layout.Shard(0, 2).owns(bad.key)  # sharding hashes the key's UTF-8: this raised UnicodeEncodeError
    with pytest.raises(CrackModelError):
        store.read(bad.key)


def test_a_non_utf8_name_and_a_name_that_reads_the_same_are_two_entries(store):
    """x\\xe9.jpg (a backslash, from a Windows zip) beside x + byte 0xE9: two uploads, two rows, each with a reason."""
    folder = store.root / "incoming" / "b1"
    os.close(os.open(os.fsencode(folder) + b"/x\xe9.jpg", os.O_WRONLY | os.O_CREAT, 0o644))
    (folder / "x\\xe9.jpg").write_bytes(b"x")
    found = listing(store, "incoming/b1/")
    assert sorted(found) == ["incoming/b1/x\\xe9.jpg", "incoming/b1/x\\xe9.jpg (not UTF-8)"]
    assert "backslash" in found["incoming/b1/x\\xe9.jpg"].problem
    assert "not valid UTF-8" in found["incoming/b1/x\\xe9.jpg (not UTF-8)"].problem


def test_two_non_utf8_names_that_escape_alike_are_two_entries_and_keep_their_keys(store):
    """b"\\xe9\\\\xe9.jpg" and b"\\\\xe9\\xe9.jpg" both read \\xe9\\xe9.jpg once escaped: one key for two files
    made the batch's validation fail on every try, and would have lost one upload. Folders too."""
    base = os.fsencode(store.root / "incoming" / "b1")
    for name in (b"/\xe9\\xe9.jpg", b"/\\xe9\xe9.jpg"):
        os.close(os.open(base + name, os.O_WRONLY | os.O_CREAT, 0o644))
    for folder in (b"/\xe9\\xe9", b"/\\xe9\xe9"):
        os.mkdir(base + folder)
        os.close(os.open(base + folder + b"/a.jpg", os.O_WRONLY | os.O_CREAT, 0o644))
    found = listing(store, "incoming/b1/")
    assert len(found) == 4
    assert {key for key in found if "/a.jpg" not in key} == {
        "incoming/b1/\\xe9\\xe9.jpg",
        "incoming/b1/\\xe9\\xe9.jpg (not UTF-8)",
    }
    assert all("not valid UTF-8" in info.problem for info in found.values())
    assert listing(store, "incoming/b1/").keys() == found.keys()  # every listing gives each file the same key
    assert store.folders("incoming/b1") == ["\\xe9\\xe9", "\\xe9\\xe9 (not UTF-8)"]
    assert sorted(store.files("incoming/b1")) == ["\\xe9\\xe9.jpg", "\\xe9\\xe9.jpg (not UTF-8)"]


def test_files_inside_a_non_utf8_folder_each_get_an_entry(store):
    """Every file under a folder with a Latin-1 name is its own entry, each with the reason."""
    folder = os.fsencode(store.root / "incoming" / "b1") + b"/d\xe9j\xe0"
    os.mkdir(folder)
    for name in (b"/a.jpg", b"/b.jpg"):
        os.close(os.open(folder + name, os.O_WRONLY | os.O_CREAT, 0o644))
    found = listing(store, "incoming/b1/")
    assert sorted(found) == ["incoming/b1/d\\xe9j\\xe0/a.jpg", "incoming/b1/d\\xe9j\\xe0/b.jpg"]
    assert all("not valid UTF-8" in info.problem for info in found.values())


def test_a_backslash_in_a_local_file_name_is_listed_with_a_problem(store):
    r"""site\north.jpg is a legal POSIX name but not a key: it lists with the reason instead of crashing later."""
    (store.root / "incoming" / "b1" / "site\\north.jpg").write_bytes(b"x")
    [info] = store.list("incoming/b1/")
    assert info.key == "incoming/b1/site\\north.jpg"
    assert "backslash" in info.problem
    assert info.size == 1


def test_a_named_pipe_is_a_problem_and_never_blocks_a_read(store):
    """A FIFO among the uploads is listed with a reason; reading it fails at once instead of hanging."""
    os.mkfifo(store.root / "incoming" / "b1" / "pipe.jpg")
    [info] = store.list("incoming/b1/")
    assert "not a regular file" in info.problem
    with pytest.raises(CrackModelError, match="not a regular file"):
        store.read("incoming/b1/pipe.jpg")


def test_a_listing_of_every_oddity_never_raises_and_gives_one_entry_per_name(store, outside):
    """Links, bad encodings, backslashes, pipes, long names and ordinary files: one entry each, no exception."""
    folder = store.root / "incoming" / "b1"
    (folder / "link.jpg").symlink_to(outside / "secret.jpg")
    (folder / "linkdir").symlink_to(outside, target_is_directory=True)
    (folder / "dangling.jpg").symlink_to(outside / "missing.jpg")
    os.close(os.open(os.fsencode(folder) + b"/caf\xe9.jpg", os.O_WRONLY | os.O_CREAT, 0o644))
    (folder / "a\\b.jpg").write_bytes(b"x")
    os.mkfifo(folder / "pipe")
    store.write(f"incoming/b1/{'z' * 400}.jpg", b"long")
    store.write("incoming/b1/_DSC1234.JPG", b"camera")
    found = listing(store, "incoming/")
    assert len(found) == 8
    served = {key for key, info in found.items() if info.problem is None}
    assert served == {f"incoming/b1/{'z' * 400}.jpg", "incoming/b1/_DSC1234.JPG"}


def test_an_upload_merely_named_like_the_stores_own_files_is_listed(store):
    """Only the exact shapes of the store's temporary, lock and side files stay out of listings: uploads named
    ".tmp-scan.jpg" or ".longname-photo.jpg" are uploads, each with a row."""
    names = [".tmp-scan.jpg", ".tmp-lock-photo.jpg", f".tmp-{'a' * 32}.jpg", ".longname-photo.jpg", ".longname-0123"]
    for name in [*names, f".tmp-{'a' * 32}"]:  # the last: a write cut short, which stays out
        (store.root / "incoming" / "b1" / name).write_bytes(b"x")
    assert sorted(info.key for info in store.list("incoming/b1/")) == sorted(f"incoming/b1/{name}" for name in names)


def test_temp_lock_and_side_files_are_never_listed(store):
    """The store's own bookkeeping (temp, lock and long-name side files) stays out of listings."""
    store.write_if_match("incoming/b1/aliases.json", b"{}", None)
    store.write(f"incoming/b1/{'n' * 300}.jpg", b"x")
    on_disk = {path.name for path in (store.root / "incoming" / "b1").iterdir()}
    assert any(name.startswith(TEMP_MARKER) for name in on_disk)
    assert any(name.startswith(LONG_NAME_MARKER) for name in on_disk)
    keys = [info.key for info in store.list("incoming/b1/")]
    assert sorted(keys) == sorted(["incoming/b1/aliases.json", f"incoming/b1/{'n' * 300}.jpg"])


def test_a_read_only_store_names_the_object_not_a_temporary_file(tmp_path, monkeypatch):
    """On a read-only mount, promote and gate said "Read-only file system: .tmp-lock-...; check the paths given":
    a lock file's name without its folder."""
    import errno
    import os

    from crack_model.core import local_store
    from crack_model.core.object_keys import TEMP_MARKER

    store = LocalStore(tmp_path)
    store.write("models/crack/aliases.json", b"{}")
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).startswith(TEMP_MARKER):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(local_store.os, "open", read_only)
    for attempt in (lambda: store.write("models/crack/a.json", b"x"),
                    lambda: store.write_if_match("models/crack/aliases.json", b"{}", None)):  # fmt: skip
        with pytest.raises(OSError) as refused:
            attempt()
        assert refused.value.errno == errno.EROFS and refused.value.filename.startswith(str(tmp_path / "models"))


def test_a_delete_refused_by_the_file_system_names_the_object(tmp_path, monkeypatch):
    """`score --force` on a read-only results folder said "Permission denied: _DONE", a name without its folder."""
    import errno

    from crack_model.core import local_store

    store = LocalStore(tmp_path)
    store.write("results/b1/_parts/v1/shard-0000-of-0001/_DONE", b"{}")

    def refused(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(local_store.os, "unlink", refused)
    with pytest.raises(PermissionError) as failure:
        store.delete("results/b1/_parts/v1/shard-0000-of-0001/_DONE")
    assert failure.value.filename == str(tmp_path / "results/b1/_parts/v1/shard-0000-of-0001/_DONE")
