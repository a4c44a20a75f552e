"""The CSV files the workflow stores: every field quoted, lines ending in "\\n".

Keys are uploaders' file names, and a name may hold a comma, a quote, a line feed or a carriage
return. Python's csv writer (3.11) quotes a field holding "\\r" only when "\\r" is part of the line
terminator, so with "\\n" endings a name like ``a\\rb.jpg`` was written bare, and the file could no
longer be read back ("new-line character seen in unquoted field"): a whole night's results lost
to one upload's name. The standard library's ``unix`` dialect quotes every field, which any CSV
reader takes back, whatever the name holds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

STORED_DIALECT = csv.unix_dialect


def csv_bytes(
    columns: Sequence[str], rows: Iterable[Mapping[str, Any]], *, extras: Literal["raise", "ignore"] = "raise"
) -> bytes:
    """A header of ``columns`` and one line per row, UTF-8 (``extras``: what to do with keys not in ``columns``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction=extras, dialect=STORED_DIALECT)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")
