"""Uploads' names in validation's text for people (the CLI's lines, the task log): one name, one line, no escapes.

A name may hold a line break or a terminal escape sequence; shown raw, it forges a log line of its own
("... ERROR ...") or clears the operator's terminal. Keys and the reasons quoting them are escaped alike.
"""

from __future__ import annotations

from crack_model.quality.batch_validation import validate_batch

FORGED = "x.jpg\n2026-12-07 02:00:00,000 ERROR crack_model: forged \x1b[2J"


def test_a_link_named_to_forge_a_log_line_stays_on_its_line(tmp_path, metu_sample):
    """The store's reason for a link quotes its key ("<key> is a symbolic link"): it was printed raw."""
    folder = tmp_path / "store" / "incoming" / "b1"
    folder.mkdir(parents=True)
    for path in sorted((metu_sample / "Negative").glob("*.jpg"))[:24]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / FORGED).symlink_to(folder / path.name)

    outcome = validate_batch(str(tmp_path / "store"), "b1")

    assert [item["key"] for item in outcome.quarantined] == [f"incoming/b1/{FORGED}"]  # the record keeps it exact
    lines = outcome.summary().splitlines()
    assert not [line for line in lines if "forged" in line and not line.startswith("  quarantined incoming/b1/x.jpg")]
    assert "\x1b" not in outcome.summary()
    assert r"x.jpg\n2026-12-07 02:00:00,000 ERROR crack_model: forged \x1b[2J is a symbolic link" in outcome.summary()
