"""The training-data manifest kept with a registered version: which images, which labels, which bytes."""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from crack_model.core.csv_text import csv_bytes
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import SPLIT_NAME
from crack_model.data.labeled import NO_SLICE, LabeledImage

log = module_logger(__name__)

DATA_MANIFEST = "data_manifest.csv"


def build_data_manifest(
    source: str | Path | Sequence[LabeledImage] | None, model_dir: Path
) -> tuple[bytes | None, dict[str, Any] | None]:
    """The training-data manifest as CSV bytes (uri,label,sha256[,split][,slice][,perceptual_hash]) and its summary.

    The slice column (the folder below the class folder) tells the gate which surfaces a champion was trained
    on (``training_slices``); a manifest given as a CSV without one leaves that unknown.
    """
    rows: list[dict[str, str]]
    if source is None:
        split_csv = model_dir / SPLIT_NAME
        if not split_csv.is_file():
            log.warning("no data manifest: %s has no split.csv and none was given", model_dir)
            return None, None
        source = split_csv
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise CrackModelError(f"data manifest {path} does not exist: pass a CSV with uri, label, sha256 columns")
        with open(path, newline="", encoding="utf-8-sig") as handle:  # a BOM, as Excel writes: not in the header
            reader = csv.DictReader(handle)
            header = set(reader.fieldnames or [])
            location = "uri" if "uri" in header else "key"
            if location not in header or "label" not in header:
                raise CrackModelError(f"data manifest {path} needs 'uri' (or 'key') and 'label' columns")
            rows = [
                {
                    "uri": row[location],
                    "label": row["label"],
                    "sha256": row.get("sha256") or "",
                    "split": row.get("split") or "",
                    "slice": (row.get("slice") or "").strip(),
                    "perceptual_hash": (row.get("perceptual_hash") or "").strip(),
                }
                for row in reader
            ]
            with_slice = "slice" in header
    else:
        rows = [
            {
                "uri": image.uri,
                "label": image.label,
                "sha256": image.sha256,
                "split": "",
                "slice": image.slice,
                "perceptual_hash": image.perceptual_hash,
            }
            for image in source
        ]
        with_slice = True
    rows.sort(key=lambda row: (row["uri"], row["label"]))
    if with_slice:
        for row in rows:
            row["slice"] = row["slice"] or NO_SLICE
    with_split = any(row["split"] for row in rows)
    with_looks = any(row["perceptual_hash"] for row in rows)  # the gate's look-alike check (holdout_checks.py)
    columns = ["uri", "label", "sha256", *(["split"] if with_split else []), *(["slice"] if with_slice else []),
               *(["perceptual_hash"] if with_looks else [])]  # fmt: skip
    data = csv_bytes(columns, rows, extras="ignore")
    hashed = all(row["sha256"] for row in rows)
    # Where the images live can change; their bytes and labels are what the model learnt from.
    content = "\n".join(sorted(f"{row['label']},{row['sha256']}" for row in rows)) if hashed else None
    summary = {
        "file": DATA_MANIFEST,
        "images": len(rows),
        "per_label": dict(sorted(Counter(row["label"] for row in rows).items())),
        "per_split": dict(sorted(Counter(row["split"] for row in rows).items())) if with_split else None,
        "per_slice": dict(sorted(Counter(row["slice"] for row in rows).items())) if with_slice else None,
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_digest": hashlib.sha256(content.encode()).hexdigest() if content is not None else None,
    }
    return data, summary


def read_data_manifest(data: bytes, source: str) -> list[dict[str, str]]:
    """The rows of a stored ``data_manifest.csv``: uri, label, sha256 (may be empty), and split and slice where stored.

    Args:
        data: the CSV bytes.
        source: where they came from, for the error message.
    """
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    header = set(reader.fieldnames or [])
    if not {"uri", "label", "sha256"} <= header:
        msg = f"data manifest {source} needs uri, label and sha256 columns (found {sorted(header) or 'none'})"
        raise CrackModelError(msg)
    return [
        {
            "uri": row["uri"],
            "label": row["label"],
            "sha256": row["sha256"] or "",
            **({"split": (row["split"] or "").strip()} if "split" in header else {}),
            **({"slice": (row["slice"] or "").strip() or NO_SLICE} if "slice" in header else {}),
            **({"perceptual_hash": (row["perceptual_hash"] or "").strip()} if "perceptual_hash" in header else {}),
        }
        for row in reader
    ]


def with_split_slices(rows: list[dict[str, str]], split_csv: bytes) -> list[dict[str, str]]:
    """Manifest rows without slices (registered before manifests kept them), given each row's split and slice
    from the version's ``split.csv`` when that lists the same images; else the rows as they are."""
    if not rows or all("slice" in row for row in rows):
        return rows
    split_rows = list(csv.DictReader(io.StringIO(split_csv.decode("utf-8"))))
    if not split_rows or "slice" not in split_rows[0] or not all(row["sha256"] for row in rows):
        return rows
    by_image = {(row.get("label"), row.get("sha256")): row for row in split_rows}
    if len(by_image) != len(split_rows) or {(row["label"], row["sha256"]) for row in rows} != set(by_image):
        return rows  # not the same images (a manifest given as a CSV): the slices stay unknown
    return [
        {
            **row,
            "split": (by_image[row["label"], row["sha256"]].get("split") or "").strip(),
            "slice": (by_image[row["label"], row["sha256"]]["slice"] or "").strip() or NO_SLICE,
        }
        for row in rows
    ]


# What a model learnt from: fitted on train, its threshold (per slice) and checkpoint chosen on validation.
LEARNT_FROM = frozenset({"train", "validation"})


def training_slices(rows: Sequence[Mapping[str, str]] | None) -> frozenset[str] | None:
    """The slices a model learnt from (train and validation rows; every row when no split is recorded).

    None when unknown: no manifest, or no slice column.
    """
    if not rows or any("slice" not in row for row in rows):
        return None
    return frozenset(row["slice"] for row in rows if not row.get("split") or row["split"] in LEARNT_FROM)


def slices_sharing_images(rows: Sequence[Mapping[str, str]], others: Sequence[Mapping[str, str]]) -> frozenset[str]:
    """The slices of ``rows`` that hold an image (same bytes) of ``others``, whatever its slice is called there."""
    hashes = {row["sha256"] for row in others if row.get("sha256")}
    return frozenset(row["slice"] for row in rows if "slice" in row and row.get("sha256") in hashes)
