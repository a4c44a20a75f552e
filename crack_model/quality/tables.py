"""The tables the suites check, built from a profile, and plain Python values from their cells.

``objects``: the profile (one row per object) plus ``duplicate_of`` and ``in_holdout``, checks GX has
no expectation for. ``classes``: one row per known class (``images``, ``share_of_largest``) for the
class size and balance checks.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def objects_table(profile: pd.DataFrame, holdout_hashes: Collection[str] = ()) -> pd.DataFrame:
    """The profile plus ``duplicate_of`` (first key with the same bytes) and ``in_holdout``."""
    table = profile.copy()
    first_key: dict[str, str] = {}
    duplicates: list[str | None] = []
    for key, digest in sorted(zip(table["key"], table["sha256"], strict=True)):
        if isinstance(digest, str) and digest in first_key:
            duplicates.append(first_key[digest])
        else:
            if isinstance(digest, str):
                first_key[digest] = key
            duplicates.append(None)
    duplicate_of = dict(zip(sorted(table["key"]), duplicates, strict=True))
    table["duplicate_of"] = [duplicate_of[key] for key in table["key"]]
    table["duplicate_of"] = table["duplicate_of"].astype(object)
    holdout = set(holdout_hashes)
    table["in_holdout"] = [isinstance(digest, str) and digest in holdout for digest in table["sha256"]]
    table["in_holdout"] = table["in_holdout"].astype(bool)
    return table


def classes_table(profile: pd.DataFrame, class_names: Iterable[str]) -> pd.DataFrame:
    """One row per known class: decodable ``images`` and ``share_of_largest``."""
    # pandas is imported only when a table is built: keeps DAG parsing and `--help` fast.
    import pandas as pd

    decodable = profile[profile["decodable"].astype(bool)]
    counts = decodable["label"].value_counts()
    names = list(class_names)
    images = [int(counts.get(name, 0)) for name in names]
    largest = max(images, default=0)
    shares = [count / largest if largest else 0.0 for count in images]
    return pd.DataFrame({"label": names, "images": images, "share_of_largest": shares})


def plain(value: Any) -> Any:
    """numpy / pandas scalars to plain Python, missing to None."""
    if value is None:
        return None
    try:
        # pandas is imported only when a value is converted: keeps DAG parsing and `--help` fast.
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, "item") else value
