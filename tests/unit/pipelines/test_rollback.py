"""Rolling the champion back (crack_model.pipelines.rollback): once per run, only from the champion the caller saw."""

from __future__ import annotations

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.core.model_card import ModelCard
from crack_model.pipelines.rollback import roll_back_champion, rollback_target
from crack_model.registry.audit_log import RollbackDoneError
from crack_model.registry.versions import Registry
from tests.unit.pipelines.promotions import FIRST, SECOND, two_promotions


@pytest.fixture()
def store(tmp_path):
    return two_promotions(tmp_path)


def test_rollback_moves_the_champion_back_and_records_who_which_run_and_why(store):
    """The champion returns to the version before it; the audit entry holds the actor, run id and reason."""
    assert rollback_target(store, "crack") == FIRST
    entry = roll_back_champion(store, "crack", reason="  false alarms on site b ", actor="alice",
                               run_id="manual__2026-11-30T10:00:00+00:00", expected_champion=SECOND)  # fmt: skip
    assert entry["already_done"] is False
    assert (entry["event"], entry["from"], entry["to"]) == ("rollback", SECOND, FIRST)
    assert (entry["actor"], entry["run_id"], entry["reason"]) == ("alice", "manual__2026-11-30T10:00:00+00:00",
                                                                  "false alarms on site b")  # fmt: skip
    registry = Registry(store)
    assert registry.aliases("crack").get("champion") == FIRST
    last = registry.history("crack")[-1]
    assert (last.event, last.actor, last.run_id) == ("rollback", "alice", "manual__2026-11-30T10:00:00+00:00")
    assert rollback_target(store, "crack") is None


def test_a_retried_run_does_not_roll_back_twice(store):
    """The same run id a second time returns the first entry and leaves the champion where it is."""
    first = roll_back_champion(store, "crack", reason="bad night", actor="alice", run_id="manual__1")
    again = roll_back_champion(store, "crack", reason="bad night", actor="alice", run_id="manual__1")
    assert again["already_done"] is True and again["revision"] == first["revision"]
    registry = Registry(store)
    assert registry.aliases("crack").get("champion") == FIRST
    assert [entry.event for entry in registry.history("crack")] == ["promote", "promote", "rollback"]


def test_a_moved_champion_is_not_rolled_back(store):
    """If the champion is no longer the one the operator saw, nothing moves and the error says so."""
    with pytest.raises(CrackModelError, match=f"not {FIRST} as the rollback request expected"):
        roll_back_champion(store, "crack", reason="bad night", actor="alice", run_id="r", expected_champion=FIRST)
    assert Registry(store).aliases("crack").get("champion") == SECOND


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_rollback_needs_a_reason(store, reason):
    """A blank reason is refused before anything is read or written."""
    with pytest.raises(CrackModelError, match="needs a reason"):
        roll_back_champion(store, "crack", reason=reason, actor="alice", run_id="r")
    assert Registry(store).aliases("crack").get("champion") == SECOND


def test_without_an_earlier_champion_there_is_nothing_to_roll_back_to(store):
    """After one rollback the lineage holds one version: the next rollback is refused with the registry's reason."""
    roll_back_champion(store, "crack", reason="first", actor="alice", run_id="r1")
    with pytest.raises(CrackModelError, match="no previous champion"):
        roll_back_champion(store, "crack", reason="second", actor="alice", run_id="r2")
    assert Registry(store).aliases("crack").get("champion") == FIRST


def test_a_rollback_to_a_version_no_longer_in_the_store_is_refused(store):
    """A version removed by hand or by a lifecycle rule: pointing the champion at it would fail every night and gate."""
    from crack_model.registry.naming import VERSION_MARKER

    store.delete(Registry(store).version_key("crack", FIRST, VERSION_MARKER))
    with pytest.raises(CrackModelError, match=f"no registered version {FIRST}"):
        roll_back_champion(store, "crack", reason="bad night", actor="alice", run_id="r")
    assert Registry(store).aliases("crack").get("champion") == SECOND


@pytest.mark.parametrize("damage", ["removed", "cut short", "replaced"])
def test_a_rollback_to_a_version_whose_model_file_is_damaged_is_refused(store, damage):
    """version.json alone is not enough: a runtime file gone, cut short or replaced by another of its size (which
    the size check passed) would fail every night on the target, whose load checks each file's SHA-256."""
    registry = Registry(store)
    files = registry.read_version("crack", FIRST)["files"]
    runtime = next(name for name in ("model_int8.tflite", "model_fp32.tflite", "model.keras") if name in files)
    key = registry.version_key("crack", FIRST, runtime)
    if damage == "removed":
        store.delete(key)
    elif damage == "cut short":
        store.write(key, store.read(key)[:10])
    else:
        store.write(key, store.read(key)[::-1])
    cause = {
        "removed": "is gone",
        "cut short": "has 10 bytes, 43 when registered",
        "replaced": r"is not the file registered \(its size, another SHA-256\): replaced since",
    }[damage]
    with pytest.raises(CrackModelError, match=f"{FIRST} cannot serve: {runtime} {cause}"):
        roll_back_champion(store, "crack", reason="bad night", actor="alice", run_id="r")
    assert registry.aliases("crack").get("champion") == SECOND


def test_overlapping_tries_of_one_run_roll_back_one_version(tmp_path, monkeypatch):
    """A stuck try and its retry: the retry's check ran before the first try committed. The registry checks the
    run id again on the state it commits on, so the champion goes back one version, not two."""
    store = two_promotions(tmp_path)
    registry = Registry(store)
    third = "20261130T000000Z-dddd4444"
    folder = tmp_path / third
    folder.mkdir()
    ModelCard(version=third, threshold=0.5, created_at="2026-11-30T02:00:00Z").save(folder)
    (folder / "model.keras").write_bytes(b"not a real model")
    registry.register(folder, "crack", actor="tester")
    registry.promote("crack", third, expected_current=SECOND, actor="tester", reason="passed")
    registry.rollback("crack", reason="bad night", actor="alice", run_id="manual__1")  # the first try, committed

    with pytest.raises(RollbackDoneError, match="run manual__1 already rolled crack back") as raised:
        registry.rollback("crack", reason="bad night", actor="alice", run_id="manual__1")
    assert raised.value.entry.to_version == SECOND
    assert registry.aliases("crack").get("champion") == SECOND
    # the step returns the first try's entry when the registry finds it (its own check read an older history)
    real_history = Registry.history
    monkeypatch.setattr(Registry, "history", lambda self, name: real_history(self, name)[:-1])  # before the commit
    again = roll_back_champion(store, "crack", reason="bad night", actor="alice", run_id="manual__1")
    assert again["already_done"] is True and again["to"] == SECOND
    assert Registry(store).aliases("crack").get("champion") == SECOND


def test_the_expected_champion_is_checked_on_the_state_the_rollback_commits_on(store):
    """A promotion between the caller's look and the rollback rolled the new champion back, putting back the one
    the operator wanted gone: the registry itself now checks the expected champion."""
    from crack_model.registry.naming import PromotionConflictError

    with pytest.raises(PromotionConflictError, match=f"moved from {FIRST} to {SECOND}"):
        Registry(store).rollback("crack", reason="bad night", actor="alice", expected_champion=FIRST)
    assert Registry(store).aliases("crack").get("champion") == SECOND


def test_a_rollback_reads_each_serving_file_of_its_target_once_even_when_its_write_is_retried(store, loaded_keys,
                                                                                             monkeypatch):  # fmt: skip
    """The files are hashed to be checked (21 MB for a real version, a GET each on S3): the retry after another
    writer's change re-reads the aliases, not the target's immutable files."""
    from crack_model.core.object_keys import PreconditionFailedError

    registry = Registry(store)
    real_write_if_match, conflicts = store.write_if_match, ["models/crack/aliases.json"]

    def write_if_match(key, data, etag):
        if key in conflicts:
            conflicts.remove(key)
            raise PreconditionFailedError(f"{key} changed")
        real_write_if_match(key, data, etag)

    monkeypatch.setattr(store, "write_if_match", write_if_match)
    registry.rollback("crack", reason="bad night", actor="alice", run_id="r")

    assert conflicts == [] and registry.aliases("crack").get("champion") == FIRST
    runtime = registry.version_key("crack", FIRST, "model.keras")
    assert loaded_keys.count(runtime) == 1, loaded_keys
