"""The gate's inputs and outputs on failure: a holdout with training images is refused; a half-written result heals."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.evaluation import holdout_checks
from crack_model.evaluation.gate import run_gate
from crack_model.evaluation.gate_checks import PROMOTE
from crack_model.evaluation.gate_report import render_gate_html
from crack_model.evaluation.holdout import load_holdout, without_label_conflicts
from crack_model.registry.versions import Registry
from tests.gate_models import variant
from tests.unit.evaluation.test_gate import detector, holdout, model_cache, new_registry, policy  # noqa: F401

CLASSES = ["Negative", "Positive"]


def test_a_retry_writes_the_page_and_runtimes_a_crash_left_out(tmp_path, detector, holdout, monkeypatch):  # noqa: F811
    """The JSON report is stored, then the process dies: the retried gate reuses it and writes the missing files."""
    registry = new_registry(tmp_path, detector)
    write = registry.store.write

    def die_after_the_json(key: str, data: bytes, **options: object) -> None:
        if key.endswith(("approved_runtimes.json", "gate_report.html")):
            raise RuntimeError("worker killed")
        write(key, data, **options)

    monkeypatch.setattr(registry.store, "write", die_after_the_json)
    with pytest.raises(RuntimeError, match="worker killed"):
        run_gate(registry, "crack", "det-1", str(holdout), policy(), promote=True)
    monkeypatch.setattr(registry.store, "write", write)
    folder = tmp_path / "store" / "models" / "crack" / "versions" / "det-1"
    assert (folder / "gate_report.json").is_file()
    assert not (folder / "gate_report.html").exists() and not (folder / "approved_runtimes.json").exists()

    report = run_gate(registry, "crack", "det-1", str(holdout), policy(), promote=True)
    assert report.reused and report.decision == PROMOTE and report.promoted
    stored = json.loads((folder / "gate_report.json").read_text())
    assert (folder / "gate_report.html").read_text() == render_gate_html(stored)
    runtimes = json.loads((folder / "approved_runtimes.json").read_text())
    assert runtimes["approved_runtimes"] == stored["approved_runtimes"] == ["litert-int8", "litert-fp32", "keras"]
    assert runtimes["gated_at"] == stored["finished_at"]
    assert any("no training-data manifest" in note for note in stored["notes"])  # the detector was not trained
    assert registry.restore_gate_files("crack", "det-1", render_gate_html) == []  # nothing left to write


def test_a_holdout_sharing_images_with_the_training_data_is_refused(tmp_path, detector, holdout):  # noqa: F811
    """Two holdout images copied into the training set and one listed by location: refused, counted, nothing stored."""
    listed = load_holdout(str(holdout), CLASSES)
    training = tmp_path / "train"
    rows = []
    for image in listed.images[:2]:  # the same bytes under another name
        source = holdout / image.uri[len(listed.uri) + 1 :]
        copy = training / image.label / f"copy-{source.name}"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, copy)
        rows.append({"uri": str(copy), "label": image.label, "sha256": hashlib.sha256(copy.read_bytes()).hexdigest()})
    rows.append({"uri": listed.images[-1].uri, "label": listed.images[-1].label, "sha256": ""})  # same location
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["uri", "label", "sha256"])
        writer.writeheader()
        writer.writerows(rows)
    registry = Registry(tmp_path / "store")
    registry.register(variant(detector, tmp_path / "leaky", "det-leaky"), "crack", data_manifest=manifest)

    with pytest.raises(CrackModelError) as refused:
        run_gate(registry, "crack", "det-leaky", str(holdout), policy(), promote=True)
    message = str(refused.value)
    assert "shares 3 of its 60 images with the training data of crack version det-leaky" in message
    assert f"copy-{(holdout / listed.images[0].uri[len(listed.uri) + 1 :]).name}" in message  # an example
    assert "holdout param" in message and "kept out of training" in message  # what to do
    assert registry.gate_report("crack", "det-leaky") is None and registry.aliases("crack").get("champion") is None

    clean = tmp_path / "clean-holdout"
    shutil.copytree(holdout, clean)
    for image in [*listed.images[:2], listed.images[-1]]:
        (clean / image.uri[len(listed.uri) + 1 :]).unlink()
    report = run_gate(registry, "crack", "det-leaky", str(clean), policy())
    assert report.document["holdout"]["images"] == 57
    assert report.decision == PROMOTE
    assert any("1 of the 3 training images" in note and "by location only" in note for note in report.notes)


def test_holdout_images_that_look_like_training_images_are_not_graded_on(tmp_path, detector, holdout):  # noqa: F811
    """Training photos saved again (another JPEG quality, PNG) were graded on: other bytes, so the overlap check
    passed them, and the gate promoted on images the model learnt from."""
    from PIL import Image

    from crack_model.data.labeled import LabeledImage, fingerprint_all
    from crack_model.data.manifest import build_data_manifest

    listed = load_holdout(str(holdout), CLASSES)
    training = tmp_path / "train"
    originals = []
    for image in listed.images[:3]:  # each holdout image is the re-saved copy of a training photo
        source = holdout / image.uri[len(listed.uri) + 1 :]
        original = training / image.label / f"original-{source.stem}.png"
        original.parent.mkdir(parents=True, exist_ok=True)
        Image.open(source).convert("RGB").save(original)
        originals.append(LabeledImage(str(original), image.label))
    readable, unreadable = fingerprint_all(originals)
    assert not unreadable
    manifest_bytes, _ = build_data_manifest(readable, tmp_path)
    assert manifest_bytes is not None and b"perceptual_hash" in manifest_bytes.splitlines()[0]
    (tmp_path / "manifest.csv").write_bytes(manifest_bytes)
    registry = Registry(tmp_path / "store")
    registry.register(
        variant(detector, tmp_path / "look", "det-look"), "crack", data_manifest=tmp_path / "manifest.csv"
    )

    report = run_gate(registry, "crack", "det-look", str(holdout), policy())

    assert report.document["holdout"]["images"] == 57 and report.document["holdout"]["left_out"] == 3
    note = next(note for note in report.notes if "not graded on" in note)
    assert "3 file(s)" in note and "looks like training image" in note and "original-" in note


def test_a_holdout_image_replaced_after_the_overlap_check_stops_the_gate(tmp_path, detector, holdout, monkeypatch):  # noqa: F811
    """The overlap check hashes the holdout, then the models are scored on it: an image replaced in between (it
    could be a training image, and the champion could be graded on other bytes than the candidate) stops the
    gate, naming it, and no report is stored."""

    copy = tmp_path / "holdout"
    shutil.copytree(holdout, copy)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"uri,label,sha256\ns3://pool/labeled/Positive/x.jpg,Positive,{'0' * 64}\n")
    registry = Registry(tmp_path / "store")
    registry.register(variant(detector, tmp_path / "det", "det-swap"), "crack", data_manifest=manifest)
    listed = load_holdout(str(copy), CLASSES)
    swapped = copy / listed.keys[0]
    real_check = holdout_checks.check_not_in_training

    def check_then_swap(*args, **kwargs):
        note = real_check(*args, **kwargs)
        swapped.write_bytes((copy / listed.keys[-1]).read_bytes())  # another holdout photo, in its place
        return note

    monkeypatch.setattr(holdout_checks, "check_not_in_training", check_then_swap)
    with pytest.raises(CrackModelError, match=rf"holdout image \S+{re.escape(listed.keys[0])} changed during the gate"):
        run_gate(registry, "crack", "det-swap", str(copy), policy(), promote=True)
    assert registry.gate_report("crack", "det-swap") is None and registry.aliases("crack").get("champion") is None


def test_a_holdout_image_replaced_while_a_runtime_scores_it_stops_the_gate(tmp_path, detector, holdout, monkeypatch):  # noqa: F811
    """Without a training manifest nothing is hashed up front: the candidate's scoring pins what it read. An
    image replaced before the LiteRT runtimes score it fails their scoring, which the gate would take as a
    broken export and decide on; it stops the gate instead, and no report is stored."""
    from crack_model.evaluation import gate

    copy = tmp_path / "holdout"
    shutil.copytree(holdout, copy)
    registry = Registry(tmp_path / "store")
    registry.register(variant(detector, tmp_path / "det", "det-swap"), "crack")
    listed = load_holdout(str(copy), CLASSES)
    real_evaluate, evaluated = gate.evaluate_on_holdout, []

    def evaluate_then_swap(scorer, holdout_set, **kwargs):
        evaluated.append(scorer.runtime.name)
        result = real_evaluate(scorer, holdout_set, **kwargs)
        (copy / listed.keys[1]).write_bytes((copy / listed.keys[-1]).read_bytes())  # after the candidate's scoring
        return result

    monkeypatch.setattr(gate, "evaluate_on_holdout", evaluate_then_swap)
    with pytest.raises(CrackModelError, match=rf"holdout image \S+{re.escape(listed.keys[1])} changed during the gate"):
        run_gate(registry, "crack", "det-swap", str(copy), policy(), promote=True)
    assert evaluated[0] == "keras" and len(evaluated) >= 2  # a runtime scored after the swap
    assert registry.gate_report("crack", "det-swap") is None and registry.aliases("crack").get("champion") is None


def test_the_gate_reads_each_models_training_slices_from_its_data_manifest(tmp_path, detector, holdout):  # noqa: F811
    """The champion's and the candidate's manifests keep each image's slice, and the gate passes each model's
    own to the decision (reported as ``training_slices``): here the candidate brings site-b."""
    from crack_model.data.labeled import LabeledImage

    metu = [LabeledImage(f"/train/{n}.jpg", "Positive", sha256=f"{n:064x}", slice="metu") for n in range(3)]
    site = [LabeledImage(f"/train/b{n}.jpg", "Negative", sha256=f"{n + 9:064x}", slice="site-b") for n in range(2)]
    registry = Registry(tmp_path / "store")
    registry.register(detector, "crack", data_manifest=metu)
    registry.register(variant(detector, tmp_path / "candidate", "det-2"), "crack", data_manifest=metu + site)
    registry.promote("crack", "det-1", expected_current=None, actor="ci", reason="baseline")
    assert registry.read_version("crack", "det-2")["data_manifest"]["per_slice"] == {"metu": 3, "site-b": 2}

    report = run_gate(registry, "crack", "det-2", str(holdout), policy())
    assert report.document["training_slices"] == {"champion": ["metu"], "candidate": ["metu", "site-b"]}


def test_a_manifest_without_slices_takes_them_from_the_versions_split_csv_when_it_lists_the_same_images(
    tmp_path,
    detector,  # noqa: F811
):
    """Champions registered before manifests kept slices: their split.csv has them. A manifest of other images
    (given as a CSV) leaves them unknown."""
    from crack_model.data.manifest import training_slices

    legacy = tmp_path / "legacy.csv"
    legacy.write_text(
        f"uri,label,sha256\n/a.jpg,Positive,{1:064x}\n/b.jpg,Negative,{2:064x}\n/c.jpg,Negative,{3:064x}\n"
    )
    model = variant(detector, tmp_path / "old", "det-old")
    (model / "split.csv").write_text(
        "uri,label,sha256,split,slice\n"
        f"/a.jpg,Positive,{1:064x},train,metu\n/b.jpg,Negative,{2:064x},validation,\n/c.jpg,Negative,{3:064x},test,x\n"
    )
    registry = Registry(tmp_path / "store")
    registry.register(model, "crack", data_manifest=legacy)
    assert registry.read_version("crack", "det-old")["data_manifest"]["per_slice"] is None  # as stored
    rows = registry.data_manifest("crack", "det-old")
    assert {row["uri"]: (row["split"], row["slice"]) for row in rows} == {
        "/a.jpg": ("train", "metu"), "/b.jpg": ("validation", "(none)"), "/c.jpg": ("test", "x")}  # fmt: skip
    assert training_slices(rows) == {"metu", "(none)"}  # learnt from train and validation, not test

    other = variant(detector, tmp_path / "other", "det-other")
    (other / "split.csv").write_text(f"uri,label,sha256,split,slice\n/z.jpg,Positive,{7:064x},train,metu\n")
    registry.register(other, "crack", data_manifest=legacy)
    assert training_slices(registry.data_manifest("crack", "det-other")) is None


def test_files_under_the_holdout_that_are_not_graded_on_are_named_in_the_report(tmp_path, detector, holdout):  # noqa: F811
    """A folder of another class name, a note and a hidden file: left out, each said and why, never in silence."""
    copied = tmp_path / "holdout"
    shutil.copytree(holdout, copied)
    crack = next((copied / "Positive").rglob("*.jpg"))
    (copied / "Cracked").mkdir()
    shutil.copy(crack, copied / "Cracked" / "c.jpg")
    (copied / "Positive" / "notes.txt").write_text("taken on site b")
    shutil.copy(crack, copied / "Negative" / ".hidden.jpg")
    listed = load_holdout(str(copied), CLASSES)
    assert len(listed.images) == len(load_holdout(str(holdout), CLASSES).images)
    assert listed.left_out == {
        "Cracked/c.jpg": "not in a class folder (Negative, Positive)",
        "Positive/notes.txt": "not an image file name (.jpg, .png, .heic, ...)",
        "Negative/.hidden.jpg": "hidden (a name starting with '.')",
    }
    report = run_gate(new_registry(tmp_path, detector), "crack", "det-1", str(copied), policy())
    [note] = [note for note in report.notes if "under the holdout are not graded on" in note]
    assert note.startswith("3 file(s)") and "Cracked/c.jpg: not in a class folder" in note
    assert report.document["holdout"]["left_out"] == 3


def _manifest_of(tmp_path, name, images):
    """A data manifest (with perceptual hashes) of image files, as training writes it."""
    from crack_model.data.labeled import fingerprint_all
    from crack_model.data.manifest import build_data_manifest

    readable, unreadable = fingerprint_all(images)
    assert not unreadable
    manifest_bytes, _ = build_data_manifest(readable, tmp_path)
    assert manifest_bytes is not None
    (tmp_path / name).write_bytes(manifest_bytes)
    return tmp_path / name


def _edited_copies(folder, listed, training, count):
    """Training photos whose holdout copies have another dHash, within 8 bits: saved again after a 1-px crop (of
    these 64-px images; 2 px of a 227-px patch) and a 3 % brightening (about half of the re-saved real patches lost
    their exact hash; each kept within 8 bits)."""
    from PIL import Image, ImageEnhance

    from crack_model.core.imaging import difference_hash
    from crack_model.data.labeled import LabeledImage

    originals = []
    for image in listed.images:
        source = folder / image.uri[len(listed.uri) + 1 :]
        photo = Image.open(source).convert("RGB")
        edited = ImageEnhance.Brightness(photo.crop((1, 1, photo.width - 1, photo.height - 1))).enhance(1.03)
        bits = bin(int(difference_hash(photo), 16) ^ int(difference_hash(edited), 16)).count("1")
        if not 0 < bits <= holdout_checks.LOOKALIKE_BITS:
            continue
        original = training / image.label / f"edited-{source.stem}.png"
        original.parent.mkdir(parents=True, exist_ok=True)
        edited.save(original)
        originals.append(LabeledImage(str(original), image.label))
        if len(originals) == count:
            return originals
    raise AssertionError("too few holdout images whose edited copy moves the hash by 1-8 bits")


def test_holdout_images_a_few_hash_bits_from_training_images_are_not_graded_on(tmp_path, detector, holdout):  # noqa: F811
    """Only an exact dHash match was taken for a copy: of re-saved real patches about half kept their hash, so the
    gate still graded the model on 66 of 156 of its own training photos saved again at JPEG quality 85."""
    listed = load_holdout(str(holdout), CLASSES)
    originals = _edited_copies(holdout, listed, tmp_path / "train", 3)
    registry = Registry(tmp_path / "store")
    registry.register(variant(detector, tmp_path / "near", "det-near"), "crack",
                      data_manifest=_manifest_of(tmp_path, "manifest.csv", originals))  # fmt: skip

    report = run_gate(registry, "crack", "det-near", str(holdout), policy())

    assert report.document["holdout"]["images"] == 57 and report.document["holdout"]["left_out"] == 3
    note = next(note for note in report.notes if "not graded on" in note)
    assert "looks like training image" in note and "edited-" in note


def test_holdout_images_the_champion_trained_on_grade_neither_model(tmp_path, detector, holdout):  # noqa: F811
    """Photos moved from the labeled pool to the holdout (an ordinary step) were graded on by the champion that
    learnt from them, in silence, and the candidate was held to those figures."""
    from crack_model.data.labeled import LabeledImage

    listed = load_holdout(str(holdout), CLASSES)
    same_bytes = [LabeledImage(str(holdout / image.uri[len(listed.uri) + 1 :]), image.label)
                  for image in listed.images[:2]]  # fmt: skip
    lookalike = _edited_copies(holdout, load_holdout(str(holdout), CLASSES).without(
        {key for key in listed.keys[:2]}), tmp_path / "train", 1)  # fmt: skip
    champion_manifest = _manifest_of(tmp_path, "champion.csv", [*same_bytes, *lookalike])
    registry = Registry(tmp_path / "store")
    registry.register(variant(detector, tmp_path / "old", "det-0"), "crack", data_manifest=champion_manifest)
    registry.register(detector, "crack")
    registry.promote("crack", "det-0", expected_current=None, actor="ci", reason="first model")

    report = run_gate(registry, "crack", "det-1", str(holdout), policy())

    assert report.document["holdout"]["images"] == 57 and report.document["holdout"]["left_out"] == 3
    note = next(note for note in report.notes if "not graded on" in note)
    assert note.count("the champion (det-0) was trained on it") == 2 and "looks like the champion (det-0)'s" in note
    assert report.document["champion"]["metrics"]["images"] == report.document["candidate"]["metrics"]["images"] == 57


def test_a_holdout_file_whose_name_is_not_utf8_is_left_out_saying_so(tmp_path, holdout):  # noqa: F811
    """It stopped the gate with 'NUL and backslash are not allowed', a reason about another name."""
    copied = tmp_path / "holdout"
    shutil.copytree(holdout, copied)
    crack = next((copied / "Positive").rglob("*.jpg"))
    shutil.copy(crack, os.path.join(os.fsencode(copied / "Positive"), b"caf\xe9.jpg"))
    listed = load_holdout(str(copied), CLASSES)
    assert len(listed.images) == len(load_holdout(str(holdout), CLASSES).images)
    [(key, why)] = listed.left_out.items()
    assert key == "Positive/caf\\xe9.jpg" and "not valid UTF-8" in why and "rename it" in why


def test_the_same_bytes_under_two_classes_are_named_and_not_graded_on(tmp_path, detector, holdout):  # noqa: F811
    """A crack photo also filed as Negative: one label is wrong, so neither copy grades the models; the report
    names both."""
    copied = tmp_path / "holdout"
    shutil.copytree(holdout, copied)
    crack = next((copied / "Positive").rglob("*.jpg"))
    shutil.copy(crack, copied / "Negative" / "filed-twice.jpg")
    first = crack.relative_to(copied).as_posix()
    report = run_gate(new_registry(tmp_path, detector), "crack", "det-1", str(copied), policy())
    [note] = [note for note in report.notes if "same bytes as a copy under another class" in note]
    assert note.startswith("2 holdout image(s)")
    assert f"Negative/filed-twice.jpg (same bytes as {first})" in note and f"{first} (same bytes as" in note
    graded = report.document["holdout"]
    assert graded["label_conflicts"] == 2
    assert graded["images"] == len(load_holdout(str(holdout), CLASSES).images) - 1


def test_a_class_left_empty_by_label_conflicts_is_refused(tmp_path):
    """Every crack photo also filed as Negative: nothing of the crack class is left to grade on."""
    for label in CLASSES:
        (tmp_path / label).mkdir()
    (tmp_path / "Positive" / "a.jpg").write_bytes(b"same bytes")
    (tmp_path / "Negative" / "a.jpg").write_bytes(b"same bytes")
    (tmp_path / "Negative" / "b.jpg").write_bytes(b"other bytes")
    with pytest.raises(CrackModelError, match=r"without its label conflicts\) has no images of class Positive"):
        without_label_conflicts(load_holdout(str(tmp_path), CLASSES), CLASSES)


def test_a_champion_of_other_classes_is_refused_before_any_scoring(tmp_path, detector, holdout, monkeypatch):  # noqa: F811
    """The champion named its classes no_crack/crack: a ValueError from the metrics, after every model was scored."""
    from crack_model.evaluation import gate

    other = variant(detector, tmp_path / "other", "old-1", class_names=["no_crack", "crack"], crack_class="crack")
    registry = new_registry(tmp_path, other, detector)
    registry.promote("crack", "old-1", expected_current=None, actor="test", reason="the first model")
    monkeypatch.setattr(
        gate, "evaluate_on_holdout", lambda *args: pytest.fail("scored before the classes were compared")
    )
    with pytest.raises(CrackModelError, match=r"candidate det-1 has classes \['Negative', 'Positive'\] \(crack: "
                       r"Positive\), champion old-1 \['no_crack', 'crack'\] \(crack: crack\)"):  # fmt: skip
        run_gate(registry, "crack", "det-1", str(holdout), policy())
    assert registry.gate_report("crack", "det-1") is None
