"""The tables the suites check, built from a profile, and plain Python values from their cells.

``objects``: the profile (one row per object) plus ``duplicate_of``, ``label_conflict`` and ``in_holdout``,
checks GX has no expectation for. ``classes``: one row per known class (``images``, ``share_of_largest``) for the
class size and balance checks.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def objects_table(
    profile: pd.DataFrame, holdout_hashes: Collection[str] = (), class_names: Collection[str] = ()
) -> pd.DataFrame:
    """The profile plus ``duplicate_of`` (first key with the same bytes), ``label_conflict`` and ``in_holdout``."""
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
    table["label_conflict"] = _label_conflicts(table, set(class_names))
    table["label_conflict"] = table["label_conflict"].astype(object)
    holdout = set(holdout_hashes)
    table["in_holdout"] = [isinstance(digest, str) and digest in holdout for digest in table["sha256"]]
    table["in_holdout"] = table["in_holdout"].astype(bool)
    return table


def _label_conflicts(table: pd.DataFrame, known: set[str]) -> list[str | None]:
    """For each object, the other known classes its very bytes are filed under, with a key of each (None: none).

    A photo under two class folders is a labeling mistake: whichever copy is kept, training would learn
    one of them wrong, so every copy is named (unlabeled objects, a batch's uploads, have none). A copy in a
    folder that is no class (``Positive_old/``) is ``known_label``'s to hold back, and costs the good copy nothing.
    """
    labels = table["label"] if "label" in table else [None] * len(table)
    first_of_label: dict[str, dict[str, str]] = {}  # sha256 -> label -> first key of it
    for key, digest, label in sorted(zip(table["key"], table["sha256"], labels, strict=True)):
        if isinstance(digest, str) and label in known:
            first_of_label.setdefault(digest, {}).setdefault(label, key)
    conflicts: list[str | None] = []
    for digest, label in zip(table["sha256"], labels, strict=True):
        filed = first_of_label.get(digest, {}) if isinstance(digest, str) and label in known else {}
        others = [f"{other} ({key})" for other, key in sorted(filed.items()) if other != label]
        conflicts.append(", ".join(others) or None)
    return conflicts


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
