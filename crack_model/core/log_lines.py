"""The library's loggers: a value logged into a message cannot start a line of its own or steer a terminal.

Log messages quote uploads' names, and errors and reasons that quote them, and anyone who can upload chooses
those: a key "x.jpg\\n2026-12-07 02:00:00,000 ERROR ..." wrote a forged line into the task log, and one holding
"\\x1b[2J" cleared the terminal of whoever read it. Every module logs through ``module_logger``, whose filter
shows such a value's control characters (line breaks, escape sequences, bidirectional overrides) as escapes
(``object_keys.shown_key``). Only the values are escaped, when they are formatted with ``%s``: a message's own
text is ours, and ``%r`` already escapes. A traceback is the formatter's, and is left as it is.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from typing import Any

from crack_model.core.object_keys import shown_key


class _Shown:
    """A logged value whose ``%s`` is escaped; its ``%r`` is the value's own (a repr escapes already)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return shown_key(str(self.value))

    def __repr__(self) -> str:
        return repr(self.value)


def _shown(value: Any) -> Any:
    # Numbers (NumPy's too) keep their type for %d and %.2f; anything else is shown through str(), which _Shown escapes.
    return value if value is None or isinstance(value, numbers.Number) else _Shown(value)


class OneLineValues(logging.Filter):
    """Wraps a record's arguments so that formatting them escapes their control characters."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping):  # log.info("%(key)s", {"key": ...})
            record.args = {name: _shown(value) for name, value in args.items()}
        elif isinstance(args, tuple):
            record.args = tuple(_shown(value) for value in args)
        return True


ONE_LINE_VALUES = OneLineValues()


def module_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with ``OneLineValues``: what every module of the library and plugin logs with."""
    logger = logging.getLogger(name)
    if ONE_LINE_VALUES not in logger.filters:
        logger.addFilter(ONE_LINE_VALUES)
    return logger
