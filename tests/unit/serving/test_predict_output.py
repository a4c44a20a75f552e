"""`crack-model predict`'s CSV with hostile file names: safe in a spreadsheet and on a terminal, naming the file."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import pytest

from crack_model.serving.inference import ImageScore
from crack_model.serving.predict import prediction_row, write_predictions

SCORER = SimpleNamespace(card=SimpleNamespace(threshold=0.5), version="v1")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("path", "written"),
    [('=HYPERLINK("evil.example","a").jpg', './=HYPERLINK("evil.example","a").jpg'), ("+1.jpg", "./+1.jpg"),
     ("-2.jpg", "./-2.jpg"), ("@SUM(1).jpg", "./@SUM(1).jpg"), ("\tTAB.jpg", "./\tTAB.jpg"), ("\rCR.jpg", "./\rCR.jpg"),
     ("photos/=1+1.jpg", "photos/=1+1.jpg"), ("/data/-2.jpg", "/data/-2.jpg"), ("a.jpg", "a.jpg")],
)  # fmt: skip
def test_a_path_a_spreadsheet_would_run_as_a_formula_is_written_as_the_same_file_from_dot(path, written):
    """A folder of uploads scored from inside it (`predict *`): "=HYPERLINK(...).jpg" was a formula in Excel."""
    handle = io.StringIO()
    write_predictions([prediction_row(ImageScore(key=path, crack_probability=0.9, label="crack"), SCORER)], handle)
    [row] = list(csv.DictReader(io.StringIO(handle.getvalue(), newline="")))
    assert row["path"] == written  # "./" names the same file, and the cell starts with "."


def test_control_characters_are_escaped_on_a_terminal_and_kept_in_a_file():
    """Printed to a terminal, a name holding "\\x1b[2J" cleared the screen and an OSC 8 sequence made a link."""
    name = "esc\x1b[2J\x1b]8;;https:evil\x07link.jpg"
    rows = [prediction_row(ImageScore(key=name, crack_probability=0.9, label="crack"), SCORER)]
    terminal, file = Terminal(), io.StringIO()
    write_predictions(rows, terminal)
    write_predictions(rows, file)
    assert "\x1b" not in terminal.getvalue() and r"esc\x1b[2J\x1b]8;;https:evil\x07link.jpg" in terminal.getvalue()
    [row] = list(csv.DictReader(io.StringIO(file.getvalue(), newline="")))
    assert row["path"] == name
