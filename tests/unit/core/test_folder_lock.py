"""One process at a time in a working folder (crack_model.core.folder_lock)."""

from __future__ import annotations

import pytest


def test_a_working_folder_is_held_by_one_process_at_a_time(tmp_path):
    """Two retrainings in one --work folder: the second deleted the first's pool, which then trained on the other
    store's photos and registered that model in its own registry."""
    import subprocess
    import sys

    from crack_model.core.errors import CrackModelError
    from crack_model.core.folder_lock import held_folder

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from crack_model.core.folder_lock import held_folder\n"
                               f"with held_folder(Path({str(tmp_path / 'work')!r})):\n"
                               "    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = pytest.raises(CrackModelError, match=rf"in use by another retraining \(pid {holder.pid}\)")
        with refused, held_folder(tmp_path / "work", "retraining"):
            pass
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with held_folder(tmp_path / "work", "retraining") as folder:  # released when its holder ended, however
        assert folder == tmp_path / "work"
