"""The folder a training run writes into: never a registered version nor inside the labeled folder it reads;
an earlier run's card and runtime files are removed first."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import CARD_NAME, RUNTIME_FILES
from crack_model.registry.naming import refuse_a_registered_version

log = module_logger(__name__)


def prepare_output_folder(output_dir: Path, data_source: str | Path, class_names: Sequence[str]) -> None:
    """Create ``output_dir`` for a run training on ``data_source``, or refuse it before anything is written.

    Raises:
        CrackModelError: ``output_dir`` is a registered version (or in a registry's versions folder), is the
            labeled folder itself, or lies in one of its class folders: the run's plots would be read as labeled
            photos by the next run. A folder beside the class folders (``data/runs/r1``) is never read as photos.
    """
    refuse_a_registered_version(output_dir, "train into a new folder, and register that as a new version")
    if not str(data_source).lower().endswith(".csv"):  # a manifest names its photos; a folder holds them
        out, root = Path(os.path.realpath(output_dir)), Path(os.path.realpath(data_source))
        if out == root or any(out.is_relative_to(root / name) for name in class_names):
            raise CrackModelError(f"the training output folder {output_dir} is inside the labeled folder "
                                  f"{data_source}, in a class folder or at its top: its plots would be read as "
                                  "labeled photos; give a folder outside the class folders")  # fmt: skip
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_model_files(output_dir)


def remove_model_files(folder: Path) -> None:
    """Remove the card and runtime files of a model trained in ``folder`` before: exports this run does not
    write (``--no-export``) would be read, and registered, as the new model's."""
    removed = []
    for name in (CARD_NAME, *RUNTIME_FILES.values()):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
            removed.append(name)
    if removed:
        log.info("removed the files of the model trained in %s before: %s", folder, ", ".join(removed))
