"""Alias audit records: append-only, orphans ignored, aliases.json bounded, old stores with a history list work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.registry.audit_log import CHALLENGER, CHAMPION, AuditEntry, check_history
from crack_model.registry.versions import Registry
from tests.unit.pipelines.counting_store import CountingStore
from tests.unit.registry.test_versions import registered

MODEL = Path("models") / "crack"


def audit_files(store: Path) -> list[str]:
    return sorted(path.name for path in (store / MODEL / "audit").glob("0*.json"))


def test_aliases_document_stays_small_however_many_promotions(tmp_path):
    """300 promotions: aliases.json stays under 2 KB, the records hold all 300, rollback still walks them."""
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1", "v2", "v3")
    aliases_file = tmp_path / "store" / MODEL / "aliases.json"
    current = None
    sizes = []
    for number in range(300):
        version = ("v1", "v2")[number % 2]
        registry.promote("crack", version, expected_current=current, actor="ci", reason=f"promotion {number}")
        current = version
        sizes.append(aliases_file.stat().st_size)
    assert max(sizes) < 2048, max(sizes)
    assert "history" not in json.loads(aliases_file.read_text())
    history = registry.history("crack")
    assert [entry.revision for entry in history] == list(range(1, 301))
    assert history[-1].reason == "promotion 299" and check_history(registry.aliases("crack"), history) == []
    assert len(audit_files(tmp_path / "store")) == 300
    entry = registry.rollback("crack", reason="bad night", actor="oncall")
    assert (entry.revision, entry.from_version, entry.to_version) == (301, "v2", "v1")


def test_a_record_without_its_commit_is_an_orphan_no_reader_trusts(tmp_path, monkeypatch):
    """A writer dying between its record and the aliases write leaves an orphan; history and later changes skip it."""
    store = tmp_path / "store"
    registry = Registry(store)
    registered(registry, tmp_path, "v1", "v2", "v3")
    registry.promote("crack", "v1", expected_current=None, actor="ci", reason="first")
    write = registry.store.write_if_match

    def die_before_the_commit(key: str, data: bytes, etag: str | None) -> None:
        if key.endswith("aliases.json"):
            raise RuntimeError("worker killed")
        write(key, data, etag)

    monkeypatch.setattr(registry.store, "write_if_match", die_before_the_commit)
    with pytest.raises(RuntimeError, match="worker killed"):
        registry.promote("crack", "v2", expected_current="v1", actor="lost", reason="never committed")
    monkeypatch.setattr(registry.store, "write_if_match", write)

    orphan = next(name for name in audit_files(store) if name.startswith("00000002-"))
    assert registry.resolve("crack") == "v1"
    assert [entry.actor for entry in registry.history("crack")] == ["ci"]  # revision 2 is above aliases.json's 1
    registry.promote("crack", "v3", expected_current="v1", actor="bo", reason="the real revision 2")
    assert len([name for name in audit_files(store) if name.startswith("00000002-")]) == 2  # orphan kept, not trusted
    history = registry.history("crack")
    assert [(entry.revision, entry.to_version, entry.actor) for entry in history] == [(1, "v1", "ci"), (2, "v3", "bo")]
    assert orphan not in {entry.record_name for entry in history}
    (store / MODEL / "audit" / orphan).write_bytes(b'{"revision": 2, "ev')  # damaged, and off the chain
    assert registry.rollback("crack", reason="back", actor="oncall").to_version == "v1"


def test_a_missing_committed_record_is_reported_as_a_gap(tmp_path):
    """Deleting a committed record makes history fail, naming the revision, instead of silently skipping it."""
    store = tmp_path / "store"
    registry = Registry(store)
    registered(registry, tmp_path, "v1", "v2", "v3")
    for previous, version in ((None, "v1"), ("v1", "v2"), ("v2", "v3")):
        registry.promote("crack", version, expected_current=previous, actor="ci", reason="gate passed")
    (store / MODEL / "audit" / next(n for n in audit_files(store) if n.startswith("00000002-"))).unlink()
    with pytest.raises(CrackModelError, match="gap: revision 2 is committed"):
        registry.history("crack")
    with pytest.raises(CrackModelError, match="revision 2"):
        registry.rollback("crack", reason="try", actor="oncall")
    assert registry.resolve("crack") == "v3"  # reading the champion needs aliases.json only


def test_a_damaged_committed_record_is_named_in_the_gap(tmp_path):
    store = tmp_path / "store"
    registry = Registry(store)
    registered(registry, tmp_path, "v1", "v2")
    for previous, version in ((None, "v1"), ("v1", "v2")):
        registry.promote("crack", version, expected_current=previous, actor="ci", reason="gate passed")
    damaged = next(n for n in audit_files(store) if n.startswith("00000001-"))
    (store / MODEL / "audit" / damaged).write_text("[]")
    with pytest.raises(CrackModelError, match=f"gap: revision 1 is committed.*{damaged} is not a valid audit record"):
        registry.rollback("crack", reason="try", actor="oncall")
    assert registry.resolve("crack") == "v2"


def write_old_store(store: Path, entries: list[AuditEntry], aliases: dict[str, str | None], mirrors: int) -> None:
    """aliases.json as the library wrote it before the records: the whole log inside, plus per-event copies."""
    document = {
        "format_version": 1,
        "name": "crack",
        "revision": len(entries),
        "aliases": aliases,
        "updated_at": entries[-1].at,
        "history": [{key: value for key, value in entry.as_dict().items() if key not in ("id", "previous")}
                    for entry in entries],
    }  # fmt: skip
    (store / MODEL).mkdir(parents=True, exist_ok=True)
    (store / MODEL / "aliases.json").write_text(json.dumps(document, indent=2))
    (store / MODEL / "audit").mkdir(exist_ok=True)
    for entry in entries[:mirrors]:
        (store / MODEL / "audit" / entry.record_name).write_text(json.dumps(entry.as_dict()))


def test_an_old_store_with_a_history_list_keeps_working(tmp_path):
    """A history list in aliases.json is read, moved into records by the next change, and rollback crosses over."""
    store = tmp_path / "store"
    registry = Registry(store)
    registered(registry, tmp_path, "v1", "v2", "v3")
    old = [
        AuditEntry(1, "promote", CHAMPION, None, "v1", "ana", "r1", "first", "2026-01-01T00:00:00Z", "promote"),
        AuditEntry(2, "promote", CHALLENGER, None, "v3", "ana", None, "shadow", "2026-01-02T00:00:00Z"),
        AuditEntry(3, "promote", CHAMPION, "v1", "v2", "bo", "r2", "better", "2026-01-03T00:00:00Z", "promote"),
    ]
    write_old_store(store, old, {CHAMPION: "v2", CHALLENGER: "v3"}, mirrors=1)  # two copies were never written
    assert registry.history("crack") == old
    assert registry.aliases("crack").last[CHAMPION] == old[2]  # the ops view's "promoted by"

    entry = registry.rollback("crack", reason="false alarms", actor="oncall")
    assert (entry.revision, entry.from_version, entry.to_version, entry.previous_id) == (4, "v2", "v1", None)
    document = json.loads((store / MODEL / "aliases.json").read_text())
    assert "history" not in document and document["revision"] == 4
    assert audit_files(store)[:3] == [entry.record_name for entry in old]  # written as id-less records
    history = registry.history("crack")
    assert history[:3] == old and history[3] == entry
    assert check_history(registry.aliases("crack"), history) == []
    registry.promote("crack", "v2", expected_current="v1", actor="bo", reason="fixed")
    assert [entry.to_version for entry in registry.history("crack")] == ["v1", "v3", "v2", "v1", "v2"]


@pytest.mark.parametrize("aliases", [{"champion": 5}, {"champion": ["v1"]}, ["v1"]], ids=["number", "list", "list doc"])
def test_an_alias_that_is_no_version_is_a_damaged_aliases_document(tmp_path, aliases):
    """Valid JSON with a number for the champion gave a TypeError traceback from `registry show` and `predict`."""
    registry = Registry(tmp_path)
    path = tmp_path / MODEL / "aliases.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"aliases": aliases, "revision": 1}))
    with pytest.raises(CrackModelError, match=r"aliases.json is not a valid aliases document \(.*\); rebuild it"):
        registry.resolve("crack")


def test_a_record_is_read_once_however_often_the_log_is(tmp_path):
    """The ops view read the whole log on every page, twice (trends, rollback form), a request a record, and every
    retraining adds a record or two. A record is written once: read again only if the listing shows another write."""
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1", "v2")
    for number, (version, current) in enumerate((("v1", None), ("v2", "v1"), ("v1", "v2"))):
        registry.promote("crack", version, expected_current=current, actor="ci", reason=f"promotion {number}")
    counting = CountingStore(tmp_path / "store")
    first = Registry(counting).history("crack")
    counting.calls.clear()

    assert Registry(counting).history("crack") == first
    assert [key for call, key in counting.calls if call == "read" and "/audit/" in key] == []
    rewritten = tmp_path / "store" / MODEL / "audit" / audit_files(tmp_path / "store")[0]
    rewritten.write_text(rewritten.read_text().replace("promotion 0", "promotion zero"))
    assert Registry(counting).history("crack")[0].reason == "promotion zero"
