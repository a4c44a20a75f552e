"""Model registry: immutable versions, compare-and-swap aliases, audit log, rollback, models:/ URIs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from subprocess import PIPE

import pytest

from crack_model.core import layout
from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.registry.audit_log import CHALLENGER, CHAMPION, check_history
from crack_model.registry.model_uri import REGISTRY_ENV, fetch_version, parse_model_uri
from crack_model.registry.naming import (
    GateReportExistsError,
    PromotionConflictError,
    VersionExistsError,
    VersionNotFoundError,
)
from crack_model.registry.versions import Registry
from crack_model.serving.batch import score_batch, score_shard
from crack_model.serving.scorer import load_scorer
from tests.conftest import PROJECT
from tests.gate_models import fake_model, variant
from tests.unit.pipelines.counting_store import OverlapStore


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch):
    """Keep fetched registry models out of the home folder."""
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "registry-cache"))
    monkeypatch.delenv(REGISTRY_ENV, raising=False)


def registered(registry: Registry, tmp_path: Path, *versions: str) -> list[str]:
    return [registry.register(fake_model(tmp_path / "src" / v, v), "crack", actor="test") for v in versions]


def test_register_keeps_artifacts_manifest_and_provenance(tmp_path, trained_model):
    """A trained folder becomes a version with every artifact, a data manifest with digests and its provenance."""
    registry = Registry(tmp_path / "store")
    drift = tmp_path / "profile.json"
    drift.write_text('{"brightness": [1, 2, 3]}')
    notes = tmp_path / "notes.txt"
    notes.write_text("trained on the synthetic set")
    version = registry.register(
        trained_model.output_dir, "crack", drift_reference=drift, extra_files=[notes], actor="ci", run_id="run-7"
    )
    assert version == trained_model.card.version
    folder = tmp_path / "store" / "models" / "crack" / "versions" / version
    for name in (
        "model.keras",
        "model.json",
        "model_fp32.tflite",
        "model_int8.tflite",
        "metrics.json",
        "training_config.json",
        "split.csv",
        "data_manifest.csv",
        "drift_reference.json",
        "notes.txt",
        "version.json",
    ):
        assert (folder / name).is_file(), name
    document = registry.read_version("crack", version)
    assert document["git_commit"] == trained_model.card.git_commit
    assert document["library_version"] == trained_model.card.library_version
    assert document["registered_by"] == "ci" and document["run_id"] == "run-7"
    assert document["card"]["threshold"] == trained_model.card.threshold
    assert (
        document["files"]["model.keras"]["sha256"] == hashlib.sha256((folder / "model.keras").read_bytes()).hexdigest()
    )
    with open(trained_model.output_dir / "split.csv", newline="") as handle:
        split_rows = list(csv.DictReader(handle))
    manifest_rows = list(csv.DictReader(io.StringIO((folder / "data_manifest.csv").read_text())))
    assert len(manifest_rows) == len(split_rows) == document["data_manifest"]["images"]
    assert {row["sha256"] for row in manifest_rows} == {row["sha256"] for row in split_rows}
    assert {(row["sha256"], row["slice"]) for row in manifest_rows} == {
        (row["sha256"], row["slice"]) for row in split_rows
    }
    content = "\n".join(sorted(f"{row['label']},{row['sha256']}" for row in split_rows))
    assert document["data_manifest"]["content_digest"] == hashlib.sha256(content.encode()).hexdigest()
    assert document["drift_reference"] == "drift_reference.json"


def test_registered_versions_are_immutable(tmp_path):
    """Registering the same version again is refused and leaves the stored files as they were."""
    registry = Registry(tmp_path / "store")
    fake_model(tmp_path / "a", "v1", payload=b"first")
    registry.register(tmp_path / "a", "crack")
    stored = tmp_path / "store" / "models" / "crack" / "versions" / "v1" / "model.keras"
    fake_model(tmp_path / "b", "v1", payload=b"second")
    with pytest.raises(VersionExistsError, match="immutable"):
        registry.register(tmp_path / "b", "crack")
    assert stored.read_bytes() == b"first"
    registry.add_gate_result("crack", "v1", report={"decision": "reject"}, html="<p>x</p>", approved_runtimes=[])
    with pytest.raises(GateReportExistsError, match="write-once"):
        registry.add_gate_result("crack", "v1", report={"decision": "promote"}, html="", approved_runtimes=["keras"])
    assert registry.gate_report("crack", "v1") == {"decision": "reject", "approved_runtimes": []}
    assert registry.approved_runtimes("crack", "v1") == []


def test_promotion_needs_the_expected_current_champion(tmp_path):
    """A promotion names the champion it replaces; a stale expectation fails and changes nothing."""
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1", "v2", "v3")
    first = registry.promote("crack", "v1", expected_current=None, actor="ana", reason="first model", run_id="r1")
    assert (first.from_version, first.to_version, first.actor, first.run_id) == (None, "v1", "ana", "r1")
    with pytest.raises(PromotionConflictError, match="points at v1"):
        registry.promote("crack", "v2", expected_current=None, actor="bo", reason="stale view")
    registry.promote("crack", "v2", expected_current="v1", actor="bo", reason="better recall")
    assert registry.resolve("crack", CHAMPION) == "v2"
    assert registry.promote("crack", "v2", expected_current="v1", actor="bo", reason="retried task") is None
    history = registry.history("crack")
    assert [(e.from_version, e.to_version, e.reason) for e in history] == [
        (None, "v1", "first model"),
        ("v1", "v2", "better recall"),
    ]
    assert check_history(registry.aliases("crack"), history) == []
    audit = sorted((tmp_path / "store" / "models" / "crack" / "audit").glob("*.json"))
    assert [json.loads(path.read_text())["to"] for path in audit] == ["v1", "v2"]
    with pytest.raises(VersionNotFoundError, match="no registered version v9"):
        registry.promote("crack", "v9", expected_current="v2", actor="bo", reason="typo")
    with pytest.raises(CrackModelError, match="unknown alias"):
        registry.promote("crack", "v3", "production", expected_current=None, actor="bo", reason="x")


def test_rollback_restores_the_previous_champion(tmp_path):
    """Rollback walks back through earlier champions, records who and why, and stops at the first."""
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1", "v2", "v3")
    for previous, version in ((None, "v1"), ("v1", "v2"), ("v2", "v3")):
        registry.promote("crack", version, expected_current=previous, actor="ci", reason="gate passed")
    entry = registry.rollback("crack", reason="false alarms at site 4", actor="oncall", run_id="incident-12")
    assert (entry.event, entry.from_version, entry.to_version, entry.actor) == ("rollback", "v3", "v2", "oncall")
    assert registry.resolve("crack") == "v2"
    registry.rollback("crack", reason="still bad", actor="oncall")
    assert registry.resolve("crack") == "v1"
    with pytest.raises(CrackModelError, match="no previous champion"):
        registry.rollback("crack", reason="again", actor="oncall")
    history = registry.history("crack")
    assert registry.resolve("crack") == "v1" and len(history) == 5
    assert check_history(registry.aliases("crack"), history) == []


def _race(registry: Registry, versions: list[str], expected: str | None) -> tuple[list[str], list[str]]:
    barrier = threading.Barrier(len(versions))
    won, lost = [], []

    def promote(version: str) -> None:
        barrier.wait()
        try:
            registry.promote("crack", version, expected_current=expected, actor=f"t-{version}", reason="race")
            won.append(version)
        except PromotionConflictError:
            lost.append(version)

    threads = [threading.Thread(target=promote, args=(version,)) for version in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, lost


def _assert_one_winner(registry: Registry, won: list[str], lost: list[str], contenders: list[str]) -> None:
    assert len(won) == 1, f"winners: {won}"
    assert sorted(won + lost) == sorted(contenders)
    state = registry.aliases("crack")
    history = registry.history("crack")  # the losers' records are orphans: not in the history
    assert state.get(CHAMPION) == won[0]
    assert [entry.to_version for entry in history] == ["v0", won[0]]
    assert check_history(state, history) == []


def test_concurrent_promotions_in_threads_have_one_winner(tmp_path):
    """Eight threads promote from the same champion at once: one wins, the audit log shows only it."""
    registry = Registry(tmp_path / "store")
    versions = registered(registry, tmp_path, *(f"v{index}" for index in range(9)))
    registry.promote("crack", "v0", expected_current=None, actor="ci", reason="first")
    won, lost = _race(registry, versions[1:], "v0")
    _assert_one_winner(registry, won, lost, versions[1:])


def test_concurrent_promotions_in_processes_have_one_winner(tmp_path):
    """Four processes promote from the same champion at once (file lock): exactly one wins."""
    registry = Registry(tmp_path / "store")
    versions = registered(registry, tmp_path, *(f"v{index}" for index in range(5)))
    registry.promote("crack", "v0", expected_current=None, actor="ci", reason="first")
    go = tmp_path / "go"
    script = (
        "import sys, time, pathlib\n"
        "from crack_model.registry.naming import PromotionConflictError\n"
        "from crack_model.registry.versions import Registry\n"
        "registry = Registry(sys.argv[1])\n"
        "pathlib.Path(sys.argv[3] + '-ready-' + sys.argv[2]).touch()\n"
        "while not pathlib.Path(sys.argv[3]).exists(): time.sleep(0.001)\n"
        "try:\n"
        "    registry.promote('crack', sys.argv[2], expected_current='v0', actor='proc', reason='race')\n"
        "    print('won')\n"
        "except PromotionConflictError:\n"
        "    print('lost')\n"
    )
    command = [sys.executable, "-c", script, str(tmp_path / "store")]
    processes = {
        version: subprocess.Popen([*command, version, str(go)], cwd=PROJECT, stdout=PIPE, stderr=PIPE, text=True)
        for version in versions[1:]
    }
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go-ready-*"))) < len(processes) and time.monotonic() < deadline:
        time.sleep(0.01)  # every process imported and waits at the line
    go.touch()
    outcomes = {}
    for version, process in processes.items():
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        outcomes[version] = stdout.strip()
    won = [version for version, outcome in outcomes.items() if outcome == "won"]
    lost = [version for version, outcome in outcomes.items() if outcome == "lost"]
    _assert_one_winner(registry, won, lost, versions[1:])


def test_champion_and_challenger_can_move_at_the_same_time(tmp_path):
    """A lost compare-and-swap caused by the other alias is retried: both changes land, in one history."""
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1", "v2")
    barrier = threading.Barrier(2)
    errors = []

    def promote(version: str, alias: str) -> None:
        barrier.wait()
        try:
            registry.promote("crack", version, alias, expected_current=None, actor="ci", reason=alias)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=promote, args=args) for args in (("v1", CHAMPION), ("v2", CHALLENGER))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    state = registry.aliases("crack")
    history = registry.history("crack")
    assert (state.get(CHAMPION), state.get(CHALLENGER)) == ("v1", "v2")
    assert len(history) == 2 and check_history(state, history) == []


def test_listing_and_showing_versions(tmp_path):
    """list_versions and show report aliases and gate decisions; unknown versions name the latest ones."""
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1", "v2")
    registry.promote("crack", "v1", expected_current=None, actor="ci", reason="first")
    registry.add_gate_result("crack", "v2", report={"decision": "reject"}, html="", approved_runtimes=["keras"])
    listing = {entry["version"]: entry for entry in registry.list_versions("crack")}
    assert listing["v1"]["aliases"] == [CHAMPION] and listing["v1"]["gate_decision"] is None
    assert listing["v2"]["gate_decision"] == "reject" and listing["v2"]["approved_runtimes"] == ["keras"]
    shown = registry.show("crack", "v1")
    assert shown["aliases"] == [CHAMPION] and shown["gate"] is None
    with pytest.raises(VersionNotFoundError, match="latest: v1, v2"):
        registry.show("crack", "v3")
    with pytest.raises(CrackModelError, match="no challenger"):
        registry.resolve("crack", CHALLENGER)


def test_listing_reads_the_versions_side_by_side(tmp_path):
    """A version is registered at every retraining, and the listing read four documents of each, one request after
    another: 5 s for 60 versions on (moto) S3, growing with every retraining."""
    registered(Registry(tmp_path / "store"), tmp_path, "v1", "v2", "v3")
    overlap = OverlapStore(tmp_path / "store", lambda key: key.endswith("/version.json"))

    assert [entry["version"] for entry in Registry(overlap).list_versions("crack")] == ["v1", "v2", "v3"]
    assert overlap.most >= 2


@pytest.mark.parametrize("damage", [b'{"version": "v2", ', b"[]", b"\xff\xfe"])
def test_a_damaged_version_is_named_and_the_listing_goes_on(tmp_path, damage, capsys):
    """A cut-short, non-object or non-UTF-8 version.json or gate report: one clear line, not a traceback; the
    listing shows the others and names the damaged one."""
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1", "v2", "v3")
    registry.add_gate_result("crack", "v3", report={"decision": "reject"}, html="", approved_runtimes=["keras"])
    version_json = tmp_path / "store" / "models" / "crack" / "versions" / "v2" / "version.json"
    version_json.write_bytes(damage)
    (version_json.parent.parent / "v3" / "gate_report.json").write_bytes(damage)
    for version, file_name in (("v2", "version.json"), ("v3", "gate_report.json")):
        with pytest.raises(CrackModelError, match=f"versions/{version}/{file_name} is damaged .*restore it from a"):
            registry.show("crack", version)
    listing = {entry["version"]: entry for entry in registry.list_versions("crack")}
    assert listing["v1"]["registered_by"] and "problem" not in listing["v1"]
    assert "v2/version.json is damaged" in listing["v2"]["problem"]
    assert "v3/gate_report.json is damaged" in listing["v3"]["problem"]
    code = subprocess.run([sys.executable, "-m", "crack_model", "registry", "list", "--store",
                           str(tmp_path / "store")], capture_output=True, text=True, cwd=PROJECT)  # fmt: skip
    assert code.returncode == 0 and "Traceback" not in code.stderr
    assert "v2/version.json is damaged" in code.stdout and code.stdout.count("\nv1 ") == 1


def test_model_uri_forms_and_mistakes():
    """models:/name@alias and models:/name/version parse; malformed URIs say what to write."""
    assert parse_model_uri("models:/crack@champion").alias == CHAMPION
    assert parse_model_uri("models:/crack/20261124T195745Z-4a68a5b1").version == "20261124T195745Z-4a68a5b1"
    for bad in ("models:/crack", "models:/crack@", "models:/crack@prod", "models:/a/b/c", "models:/../x/1"):
        with pytest.raises(CrackModelError, match="models:/"):
            load_scorer(bad, registry="/nonexistent")
    with pytest.raises(CrackModelError, match=REGISTRY_ENV):
        load_scorer("models:/crack@champion")


def test_an_altered_registered_file_is_refused(tmp_path):
    """Fetching a version checks every file against the hash recorded at registration."""
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1")
    (tmp_path / "store" / "models" / "crack" / "versions" / "v1" / "model.keras").write_bytes(b"swapped")
    with pytest.raises(CrackModelError, match="does not match the hash"):
        load_scorer("models:/crack/v1", registry=str(tmp_path / "store"))
    with pytest.raises(VersionNotFoundError, match="latest: v1"):
        load_scorer("models:/crack/v2", registry=str(tmp_path / "store"))


def test_a_fetched_version_gains_the_other_files_asked_for_checked_alike(tmp_path):
    """Scoring's copy holds the serving files; retraining from it also asks for split.csv, which is added to the
    same copy once its hash checks. A file the version never had is simply not there; an altered one is refused."""
    registry = Registry(tmp_path / "store")
    source = fake_model(tmp_path / "src" / "v1", "v1")
    (source / "split.csv").write_text("uri,label,sha256,split,slice\na.jpg,Positive,abc,train,metu\n")
    registry.register(source, "crack", actor="test")
    registered(registry, tmp_path, "v2")  # registered without a split.csv

    served = fetch_version(registry, "crack", "v1")
    assert not (served / "split.csv").exists()
    assert fetch_version(registry, "crack", "v1", also=["split.csv"]) == served
    assert (served / "split.csv").read_bytes() == (source / "split.csv").read_bytes()
    assert not (fetch_version(registry, "crack", "v2", also=["split.csv"]) / "split.csv").exists()

    (served / "split.csv").unlink()
    (tmp_path / "store" / "models" / "crack" / "versions" / "v1" / "split.csv").write_text("swapped")
    with pytest.raises(CrackModelError, match=r"split\.csv does not match the hash"):
        fetch_version(registry, "crack", "v1", also=["split.csv"])
    assert sorted(path.name for path in served.iterdir()) == ["model.json", "model.keras"]  # nothing half-written


def test_a_fetch_removes_what_killed_copies_left_long_ago_and_keeps_young_ones(tmp_path, monkeypatch):
    """A copy killed midway leaves a .tmp- folder or file in the cache; the next fetch removes those older than a
    day, and leaves younger ones, which may be another process's copy in progress."""
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path / "cache"))
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1", "v2")
    folder = fetch_version(registry, "crack", "v1").parent
    old_copy, old_file, young_copy = folder / ".tmp-old", folder / ".tmp-old-file", folder / ".tmp-young"
    for copy in (old_copy, young_copy):
        copy.mkdir()
        (copy / "model.keras").write_bytes(b"half")
    old_file.write_bytes(b"half")
    day_and_more_ago = time.time() - 25 * 3600
    for partial in (old_copy, old_file):
        os.utime(partial, (day_and_more_ago, day_and_more_ago))

    fetch_version(registry, "crack", "v1")  # already copied: nothing is swept
    assert old_copy.exists()
    fetch_version(registry, "crack", "v2")
    assert not old_copy.exists() and not old_file.exists()
    assert young_copy.exists()
    assert len([path for path in folder.iterdir() if not path.name.startswith(".tmp-")]) == 2  # v1's and v2's


def _rows(store: LocalStore, batch_id: str) -> list[dict[str, str]]:
    data = store.read(layout.results_key(batch_id, layout.PREDICTIONS)).decode()
    return list(csv.DictReader(io.StringIO(data)))


def test_batch_scoring_follows_the_champion(tmp_path, synth_data, trained_model, monkeypatch):
    """A batch scored with models:/crack@champion uses the champion of the batch's own store, by exact version."""
    store = LocalStore(tmp_path / "store")
    registry = Registry(store)
    first = registry.register(trained_model.output_dir, "crack")
    second = registry.register(variant(trained_model.output_dir, tmp_path / "v2", "v2-strict", threshold=1.0), "crack")
    registry.promote("crack", first, expected_current=None, actor="ci", reason="first")
    for batch_id in ("b1", "b2", "b3"):
        for path in sorted((synth_data / "Positive").glob("*.jpg"))[:3]:
            store.write(f"incoming/{batch_id}/{path.name}", path.read_bytes())

    score_shard(str(store.root), "b1", "models:/crack@champion", overlays=False)
    registry.promote("crack", second, expected_current=first, actor="ci", reason="stricter threshold")
    score_shard(str(store.root), "b2", "models:/crack@champion", overlays=False)
    monkeypatch.setenv(REGISTRY_ENV, str(store.root))  # score_batch loads the model before the shards
    score_batch(str(store.root), "b3", "models:/crack@champion", overlays=False)

    for batch_id, version, label in (("b1", first, "Positive"), ("b2", second, "Negative"), ("b3", second, "Negative")):
        rows = _rows(store, batch_id)
        assert len(rows) == 3
        assert {row["model_version"] for row in rows} == {version}
        assert {row["label"] for row in rows} == {label}  # the stricter threshold calls nothing a crack
        summary = json.loads(store.read(layout.results_key(batch_id, layout.SUMMARY)))
        assert summary["model_version"] == version


def test_a_second_registration_of_one_version_id_with_other_files_uploads_nothing(tmp_path, monkeypatch):
    """Registration A dies before its version.json; B, other files under the same version id, is refused before
    it overwrites any of A's files; A retried (the same files) completes."""
    registry = Registry(tmp_path / "store")
    first = fake_model(tmp_path / "a", "20261207T000000Z-5ame0000", payload=b"model a")
    second = fake_model(tmp_path / "b", "20261207T000000Z-5ame0000", payload=b"model b")
    write = registry.store.write_if_match

    def die_before_version_json(key, data, etag):
        if key.endswith("/version.json"):
            raise RuntimeError("worker killed")
        return write(key, data, etag)

    monkeypatch.setattr(registry.store, "write_if_match", die_before_version_json)
    with pytest.raises(RuntimeError, match="worker killed"):
        registry.register(first, "crack")
    monkeypatch.setattr(registry.store, "write_if_match", write)
    stored = tmp_path / "store" / "models" / "crack" / "versions" / "20261207T000000Z-5ame0000" / "model.keras"
    with pytest.raises(VersionExistsError, match="claims this version for other files"):
        registry.register(second, "crack")
    assert stored.read_bytes() == b"model a"
    assert registry.register(first, "crack") == "20261207T000000Z-5ame0000"
    assert registry.read_version("crack", "20261207T000000Z-5ame0000")["files"]["model.keras"]["size"] == 7


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda document: document.pop("card"), "its card, with class_names, is missing"),
        (lambda document: document["card"].update(class_names=None), "its card, with class_names, is missing"),
        (lambda document: document.update(files=[]), "its files, each with a sha256, are missing"),
        (lambda document: document["files"]["model.keras"].pop("sha256"), "its files, each with a sha256, are missing"),
        (lambda document: document["files"].pop("model.json"), "its files name no model.json or no model file"),
    ],
)
def test_a_hand_damaged_version_document_is_named_and_never_rolled_back_to(tmp_path, damage, said):
    """A version.json without its card or hashes gave KeyError tracebacks, and a rollback made it champion."""
    registry = Registry(tmp_path / "store")
    first, _ = registered(registry, tmp_path, "v1", "v2")
    registry.promote("crack", "v1", expected_current=None, actor="test", reason="first")
    registry.promote("crack", "v2", expected_current="v1", actor="test", reason="second")
    marker = tmp_path / "store" / "models" / "crack" / "versions" / first / "version.json"
    document = json.loads(marker.read_text())
    damage(document)
    marker.write_text(json.dumps(document))
    with pytest.raises(CrackModelError, match=f"version.json is damaged \\({said}\\): restore it from a backup"):
        registry.read_version("crack", first)
    with pytest.raises(CrackModelError, match="is damaged"):
        registry.rollback("crack", reason="bad night", actor="test")
    assert registry.aliases("crack").get(CHAMPION) == "v2"


def test_a_lost_aliases_document_is_not_taken_for_a_registry_never_promoted(tmp_path):
    """aliases.json deleted after two promotions: the next promotion was logged as revision 1 "from None" and a
    rollback found no previous champion, while v2 had been serving."""
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1", "v2", "v3")
    registry.promote("crack", "v1", expected_current=None, actor="test", reason="first")
    (tmp_path / "store" / "models" / "crack" / "aliases.json").unlink()
    assert registry.aliases("crack").get(CHAMPION) is None  # revision 1 alone: maybe a first promotion that died
    registry.promote("crack", "v1", expected_current=None, actor="test", reason="first, again")
    registry.promote("crack", "v2", expected_current="v1", actor="test", reason="second")
    (tmp_path / "store" / "models" / "crack" / "aliases.json").unlink()
    for attempt in (
        lambda: registry.promote("crack", "v3", expected_current=None, actor="test", reason="third"),
        lambda: registry.rollback("crack", reason="bad night", actor="test"),
        lambda: registry.resolve("crack"),
    ):
        with pytest.raises(CrackModelError, match=r"aliases.json is missing, yet models/crack/audit/ records changes "
                           r"up to revision \d: restore it from a backup"):  # fmt: skip
            attempt()
    assert not (tmp_path / "store" / "models" / "crack" / "aliases.json").exists()


@pytest.mark.parametrize("revision", ["1e999", "2.5", '"3"', "-1", "true"])
def test_an_aliases_document_with_an_odd_revision_is_named_not_a_traceback(tmp_path, revision):
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1")
    registry.promote("crack", "v1", expected_current=None, actor="test", reason="first")
    aliases = tmp_path / "store" / "models" / "crack" / "aliases.json"
    aliases.write_text(re.sub(r'"revision": \d+', f'"revision": {revision}', aliases.read_text(), count=1))
    with pytest.raises(CrackModelError, match=r"is not a valid aliases document .*is not a whole number from 0"):
        registry.aliases("crack")


def test_registry_list_shows_a_champion_whose_version_is_gone(tmp_path):
    """The champion's folder removed: the listing showed no champion anywhere, yet nights resolved it and failed."""
    import shutil

    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v1", "v2")
    registry.promote("crack", "v2", expected_current=None, actor="test", reason="first")
    shutil.rmtree(tmp_path / "store" / "models" / "crack" / "versions" / "v2")
    listing = registry.list_versions("crack")
    assert [entry["version"] for entry in listing] == ["v1", "v2"]
    assert (
        listing[1]["aliases"] == ["champion"]
        and "champion points at it, and it has no version.json" in (listing[1]["problem"])
    )


def test_version_names_and_list_versions_leave_out_what_is_no_finished_version(tmp_path):
    """Listed from the version folders now, not from every file: still only the folders with a version.json, oldest
    first; not an unfinished registration, a file beside the folders, nor a version.json a folder deeper."""
    registry = Registry(tmp_path / "store")
    registered(registry, tmp_path, "v2", "v1", "v3")
    store = registry.store
    store.write("models/crack/versions/v4/registration_claim.json", b"{}")  # a registration that died
    store.write("models/crack/versions/v4/model.keras", b"part of a model")
    store.write("models/crack/versions/version.json", b"{}")
    store.write("models/crack/versions/v5/nested/version.json", b"{}")

    assert registry.version_names("crack") == ["v1", "v2", "v3"]
    assert [summary["version"] for summary in registry.list_versions("crack")] == ["v1", "v2", "v3"]
    assert registry.version_names("other") == []
