"""Log records of the library (core/log_lines.py): a value from an upload cannot forge a line or steer a terminal."""

from __future__ import annotations

import logging

import numpy as np

from crack_model.core.log_lines import module_logger
from crack_model.pipelines.nightly import find_new_batches

FORGED = "x\n2026-12-07 02:00:00,000 ERROR crack_model: forged \x1b[2J\u202e"


def test_values_are_escaped_and_the_message_and_numbers_kept(caplog):
    log = module_logger("crack_model.test_log_lines")
    with caplog.at_level(logging.INFO, logger="crack_model.test_log_lines"):
        log.info("key %s: %d of %.1f, %r\nnext line of ours", FORGED, np.int64(3), 2.5, "a\nb")
        log.info("%(key)s", {"key": FORGED})
        log.info("no arguments: %s\n")

    first, by_name, bare = (record.getMessage() for record in caplog.records)
    assert first == (r"key x\n2026-12-07 02:00:00,000 ERROR crack_model: forged \x1b[2J\u202e: 3 of 2.5, 'a\nb'"
                     "\nnext line of ours")  # fmt: skip
    assert by_name == r"x\n2026-12-07 02:00:00,000 ERROR crack_model: forged \x1b[2J\u202e"
    assert bare == "no arguments: %s\n"
    assert module_logger("crack_model.test_log_lines").filters.count(log.filters[0]) == 1  # added once


def test_a_folder_named_to_forge_a_log_line_is_one_line_of_the_nightly_log(tmp_path, caplog):
    """find_new_batches warns about a folder that is no batch id: it named it raw, so the name forged a line."""
    (tmp_path / "incoming" / FORGED).mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="crack_model.pipelines.nightly"):
        assert find_new_batches(str(tmp_path)) == []

    [message] = [record.getMessage() for record in caplog.records]
    assert message.startswith(r"ignoring folder incoming/x\n2026-12-07 02:00:00,000 ERROR crack_model: forged \x1b[2J")
    assert message.isprintable()
