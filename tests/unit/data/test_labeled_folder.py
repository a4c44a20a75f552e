"""train --data and evaluate --cv name every photo of the folder they leave out, with why."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from crack_model.data.labeled import list_labeled

CLASSES = ("Negative", "Positive")


def photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"jpeg")
    return path


def left_out(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)


def test_photos_beside_the_class_folders_are_named_with_a_hint(tmp_path, caplog):
    """positive/, 'Positive '/, Cracked/ and a photo at the root were never listed and never named."""
    for folder in (*CLASSES, "positive", "Positive ", "Cracked"):
        photo(tmp_path / folder / "a.jpg")
    photo(tmp_path / "stray.jpg")
    (tmp_path / "notes.txt").write_text("site c, rainy day")
    (tmp_path / ".DS_Store").write_bytes(b"finder")

    with caplog.at_level(logging.WARNING):
        listed = list_labeled(tmp_path, CLASSES)

    assert sorted(Path(image.uri).parent.name for image in listed) == ["Negative", "Positive"]
    said = left_out(caplog)
    assert f"left out {str(tmp_path / 'positive')!r}: not a class folder" in said
    assert f"left out {str(tmp_path / 'Positive ')!r}: not a class folder" in said
    assert said.count("differs from the class folder 'Positive' only by case or spaces: move its photos there") == 2
    cracked = str(tmp_path / "Cracked")
    assert f"left out {cracked!r}: not a class folder, so its photos are not trained on; the classes are Neg" in said
    assert f"left out {tmp_path / 'stray.jpg'}: a photo outside the class folders (Negative, Positive)" in said
    assert "notes.txt" not in said and ".DS_Store" not in said  # not photos


def test_links_and_unreadable_folders_inside_a_class_are_named(tmp_path, caplog, monkeypatch):
    """A dangling link vanished (is_file() false), as did a linked slice folder and a folder that cannot be listed;
    a link to a photo is still trained on."""
    photo(tmp_path / "Negative" / "a.jpg")
    real = photo(tmp_path / "Positive" / "b.jpg")
    (tmp_path / "Positive" / "linked.jpg").symlink_to(real)
    (tmp_path / "Positive" / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    photo(tmp_path / "elsewhere" / "c.jpg")
    (tmp_path / "Negative" / "site-b").symlink_to(tmp_path / "elsewhere")
    locked = tmp_path / "Positive" / "site-c"
    photo(locked / "d.jpg")
    scandir = os.scandir

    def refuse(path):  # as a folder without read permission does (root reads any: the test may run as root)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    with caplog.at_level(logging.WARNING):
        listed = list_labeled(tmp_path, CLASSES)

    assert sorted(Path(image.uri).name for image in listed) == ["a.jpg", "b.jpg", "linked.jpg"]
    said = left_out(caplog)
    assert f"left out {tmp_path / 'Positive' / 'dangling.jpg'}: a symbolic link to nothing" in said
    linked = tmp_path / "Negative" / "site-b"
    assert f"left out {linked}: a symbolic link to a folder: links inside a class folder are not followed" in said
    assert f"left out {locked}: the folder cannot be listed (Permission denied): make it readable" in said
