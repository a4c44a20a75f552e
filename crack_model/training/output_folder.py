"""The folder a training run writes into: never a registered version nor inside the labeled folder it reads;
an earlier run's card and runtime files are removed first."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from crack_model.core.errors import CrackModelError
from crack_model.core.model_card import CARD_NAME, RUNTIME_FILES
from crack_model.registry.naming import refuse_a_registered_version

log = logging.getLogger(__name__)


def prepare_output_folder(output_dir: Path, data_source: str | Path) -> None:
    """Create ``output_dir`` for a run training on ``data_source``, or refuse it before anything is written.

    Raises:
        CrackModelError: ``output_dir`` is a registered version (or in a registry's versions folder), or lies
            inside the labeled folder: the run's plots, written among the class folders, would be read as
            labeled photos by the next run.
    """
    refuse_a_registered_version(output_dir, "train into a new folder, and register that as a new version")
    inside = Path(os.path.realpath(output_dir)).is_relative_to(os.path.realpath(data_source))
    if inside and not str(data_source).lower().endswith(".csv"):  # a manifest names its photos; a folder holds them
        raise CrackModelError(f"the training output folder {output_dir} is inside the labeled folder {data_source}: "
                              "its plots would be read as labeled photos; give a folder outside it")  # fmt: skip
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
