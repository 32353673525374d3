"""One writer per model folder: refused while held, free again once the holder stops or dies."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from protoshot import PrototypeClassifier
from protoshot.folder_lock import LOCK_FILE, FolderInUseError, FolderLock, folder_lock


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return PrototypeClassifier().fit(rng.normal(size=(6, 4)), [0, 0, 1, 1, 2, 2]).save(tmp_path)


def test_a_held_folder_is_refused_until_released(model_folder: Path) -> None:
    held = FolderLock(model_folder, "protoshot serve")
    with pytest.raises(FolderInUseError, match=r"in use by protoshot serve \(pid \d+\)"):
        FolderLock(model_folder, "protoshot model add")
    with (
        pytest.raises(FolderInUseError, match="stop the server first"),
        folder_lock(model_folder, "protoshot model remove"),
    ):
        pass
    held.release()
    with folder_lock(model_folder, "protoshot model remove"):
        assert (model_folder / LOCK_FILE).is_file()


def test_a_killed_holder_leaves_the_folder_free(model_folder: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom protoshot.folder_lock import FolderLock\n"
         f"lock = FolderLock({str(model_folder)!r}, 'a test server')\n"
         "print('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderInUseError, match=rf"a test server \(pid {holder.pid}\)"):
            FolderLock(model_folder, "protoshot serve")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    FolderLock(model_folder, "protoshot serve").release()


def test_a_folder_without_a_model_is_not_locked(tmp_path: Path) -> None:
    with folder_lock(tmp_path, "protoshot model fit"), folder_lock(tmp_path / "new", "fit"):
        pass
    assert not list(tmp_path.iterdir())
