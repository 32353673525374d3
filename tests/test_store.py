"""The model folder format: durable atomic writes, checked reads, migrations, the writer lock."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from protoshot import PrototypeClassifier, store
from protoshot.store import (
    FORMAT_VERSION,
    LOCK_FILE,
    FolderInUseError,
    FolderLock,
    atomic_path,
    folder_lock,
    write_atomically,
)


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return PrototypeClassifier().fit(rng.normal(size=(6, 4)), [0, 0, 1, 1, 2, 2]).save(tmp_path)


def test_write_atomically_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    write_atomically(target, b"old")
    write_atomically(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "table.parquet"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_older_formats_are_migrated_on_read(model_folder: Path, monkeypatch) -> None:
    config = json.loads((model_folder / "config.json").read_text())
    old = {**config, "format_version": FORMAT_VERSION - 1, "params": None,
           "old_params": config["params"]}  # fmt: skip
    (model_folder / "config.json").write_text(json.dumps(old))

    def rename_params(c: dict) -> dict:
        return {**{k: v for k, v in c.items() if k != "old_params"}, "params": c["old_params"]}

    monkeypatch.setitem(store.MIGRATIONS, FORMAT_VERSION - 1, rename_params)
    migrated = store.read_config(model_folder)
    assert migrated["format_version"] == FORMAT_VERSION
    assert migrated["params"] == config["params"]
    assert PrototypeClassifier.load(model_folder).classes_.tolist() == [0, 1, 2]


def test_written_files_get_the_usual_mode(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    previous = os.umask(0o022)
    try:
        write_atomically(target, b"x")
    finally:
        os.umask(previous)
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600


def test_an_older_format_without_a_migration_is_named(model_folder: Path) -> None:
    config = json.loads((model_folder / "config.json").read_text())
    (model_folder / "config.json").write_text(json.dumps({**config, "format_version": 0}))
    with pytest.raises(ValueError, match="unknown model format 0"):
        store.read_config(model_folder)


def test_a_config_without_its_arrays_entry_is_invalid(model_folder: Path) -> None:
    config = json.loads((model_folder / "config.json").read_text())
    del config["arrays_sha256"]
    (model_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a valid protoshot model config: 'arrays_sha256'"):
        store.read_model(model_folder)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_lock_on_a_folder_that_cannot_be_opened_raises_cleanly(tmp_path: Path) -> None:
    """Only the FileNotFoundError: no second error from ``__del__`` of the half-made lock."""
    with pytest.raises(FileNotFoundError):
        FolderLock(tmp_path / "missing", "protoshot serve")
    gc.collect()  # the half-made lock is finalised inside the test


def test_save_is_atomic_and_refuses_to_overwrite(blobs, tmp_path: Path) -> None:
    x, y = blobs
    model = PrototypeClassifier().fit(x, y)
    model.save(tmp_path)
    first = set(tmp_path.glob("*.safetensors"))
    with pytest.raises(FileExistsError, match="already holds a model; pass overwrite=True"):
        model.save(tmp_path)
    for label in (99, 100):
        model.partial_fit(x[:3], np.array([label] * 3))
        model.save(tmp_path, overwrite=True)
    # the arrays of the current and the previous save stay; older ones are gone
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert not first & set(tmp_path.glob("*.safetensors"))
    assert not list(tmp_path.glob(".*.tmp"))
    assert 100 in PrototypeClassifier.load(tmp_path).classes_


def test_a_failed_save_leaves_the_saved_model_and_no_temporary_file(
    blobs, tmp_path: Path, monkeypatch
) -> None:
    x, y = blobs
    model = PrototypeClassifier().fit(x, y)
    model.save(tmp_path)
    before = sorted(tmp_path.iterdir())

    def disk_full(*args) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("protoshot.store.os.replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        model.partial_fit(x[:1], [99]).save(tmp_path, overwrite=True)
    assert sorted(tmp_path.iterdir()) == before
    assert 99 not in PrototypeClassifier.load(tmp_path).classes_


def test_a_reader_of_the_old_config_still_finds_its_arrays(blobs, tmp_path: Path) -> None:
    x, y = blobs
    PrototypeClassifier().fit(x, y).save(tmp_path)
    old = json.loads((tmp_path / "config.json").read_text())
    PrototypeClassifier().fit(x + 1, y).save(tmp_path, overwrite=True)
    data = (tmp_path / old["arrays_file"]).read_bytes()  # another process, a save behind
    assert hashlib.sha256(data).hexdigest() == old["arrays_sha256"]


def test_load_reads_again_when_saves_replace_the_model_mid_read(
    blobs, tmp_path: Path, monkeypatch
) -> None:
    x, y = blobs
    models = [PrototypeClassifier().fit(x + shift, y + shift) for shift in (0, 100, 200)]
    models[0].save(tmp_path)
    read_config = store.read_config
    calls = []

    saving = []  # the saves read the config too; only the load's reads are counted

    def config_then_two_saves(path: Path) -> dict:
        config = read_config(path)
        if saving:
            return config
        if not calls:  # between this read and the arrays read, two saves land
            saving.append(True)
            models[1].save(tmp_path, overwrite=True)
            models[2].save(tmp_path, overwrite=True)
            saving.clear()
        calls.append(config["arrays_file"])
        return config

    monkeypatch.setattr(store, "read_config", config_then_two_saves)
    assert PrototypeClassifier.load(tmp_path).classes_[0] == 200
    assert len(calls) == 2


def test_load_refuses_newer_format_corrupt_and_foreign_dirs(blobs, tmp_path: Path) -> None:
    x, y = blobs
    PrototypeClassifier().fit(x, y).save(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match=f"model format {FORMAT_VERSION + 1} by a newer protoshot"):
        PrototypeClassifier.load(tmp_path / "m")
    config_path.write_text(json.dumps(config))
    arrays = tmp_path / "m" / config["arrays_file"]
    arrays.write_bytes(arrays.read_bytes()[:-8] + b"garbage!")
    with pytest.raises(ValueError, match=r"does not match config\.json.s checksum"):
        PrototypeClassifier.load(tmp_path / "m")
    with pytest.raises(
        FileNotFoundError, match=r"is not a protoshot model: config\.json is missing"
    ):
        PrototypeClassifier.load(tmp_path)
    config_path.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid protoshot model config"):
        PrototypeClassifier.load(tmp_path / "m")


def test_a_held_folder_is_refused_until_released(model_folder: Path) -> None:
    held = FolderLock(model_folder, "protoshot serve")
    with pytest.raises(FolderInUseError, match=r"in use by protoshot serve \(pid \d+\)"):
        FolderLock(model_folder, "protoshot add")
    with (
        pytest.raises(FolderInUseError, match="stop the server first"),
        folder_lock(model_folder, "protoshot remove"),
    ):
        pass
    held.release()
    with folder_lock(model_folder, "protoshot remove"):
        assert (model_folder / LOCK_FILE).is_file()


def test_a_killed_holder_leaves_the_folder_free(model_folder: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom protoshot.store import FolderLock\n"
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
    with folder_lock(tmp_path, "protoshot fit"), folder_lock(tmp_path / "new", "fit"):
        pass
    assert not list(tmp_path.iterdir())


def test_a_save_removes_temporaries_a_killed_writer_left(model_folder: Path) -> None:
    old = model_folder / ".config.json.0123456789abcdef.tmp"
    recent = model_folder / ".config.json.fedcba9876543210.tmp"
    for stray in (old, recent):
        stray.write_bytes(b"half a file")
    os.utime(old, (0, 0))  # left long ago
    model = PrototypeClassifier.load(model_folder)
    model.save(model_folder, overwrite=True)
    assert not old.exists() and recent.exists()  # a recent one may be another writer's
    PrototypeClassifier.load(model_folder)  # a load removes nothing
    assert recent.exists()


def test_a_save_keeps_the_mode_the_owner_gave(model_folder: Path) -> None:
    os.chmod(model_folder / "config.json", 0o640)
    PrototypeClassifier.load(model_folder).save(model_folder, overwrite=True)
    assert (model_folder / "config.json").stat().st_mode & 0o777 == 0o640


WRITER = """
import sys
import numpy as np
from protoshot import PrototypeClassifier
folder = sys.argv[1]
rng = np.random.default_rng(int(sys.argv[2]))
while True:
    model = PrototypeClassifier.load(folder)
    model.partial_fit(rng.normal(size=(1, 4)), [int(rng.integers(0, 3))])
    model.save(folder, overwrite=True)
    print(int(model.shot_counts_.sum()), flush=True)  # acknowledged: saved before printed
"""


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_no_acknowledged_save(model_folder: Path) -> None:
    """Fault injection: a writer saving in a loop is killed at random moments; every save it
    acknowledged is in the folder, which always loads."""
    import time

    rng = np.random.default_rng(7)
    acknowledged = 6
    for cycle in range(6):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(model_folder), str(cycle)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert writer.stdout is not None
        first = writer.stdout.readline()  # it is running: now kill it somewhere in a save
        time.sleep(float(rng.uniform(0.0, 0.3)))
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate()
        lines = [first, *out.splitlines()]
        acknowledged = max([acknowledged, *(int(n) for n in lines if n.strip())])
        saved = PrototypeClassifier.load(model_folder)  # loads whatever moment the kill hit
        assert int(saved.shot_counts_.sum()) >= acknowledged


def test_a_folder_that_cannot_be_written_says_so_in_one_line(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def read_only(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(store.os, "open", read_only)  # root may write anywhere: injected
    with pytest.raises(
        PermissionError, match=r"cannot write to .* \(Read-only file system\).*--read-only"
    ):
        FolderLock(model_folder, "protoshot add")
    gc.collect()  # and no traceback from the half-made lock's __del__


def test_tidying_after_a_save_never_reports_it_unsaved(model_folder: Path) -> None:
    odd = model_folder / ".config.json.0123456789abcdef.tmp"
    odd.mkdir()  # not a file: cannot be unlinked
    os.utime(odd, (0, 0))
    model = PrototypeClassifier.load(model_folder)
    model.partial_fit(np.zeros((1, 4)), [1])
    model.save(model_folder, overwrite=True)  # committed, whatever the tidying meets
    assert PrototypeClassifier.load(model_folder).shot_counts_.tolist() == [2, 3, 2]


def test_the_new_arrays_file_takes_the_previous_ones_mode(model_folder: Path) -> None:
    for entry in model_folder.iterdir():
        if entry.is_file():
            os.chmod(entry, 0o600)
    model = PrototypeClassifier.load(model_folder)
    model.partial_fit(np.ones((1, 4)), [0])
    model.save(model_folder, overwrite=True)
    config = json.loads((model_folder / "config.json").read_text())
    assert (model_folder / config["arrays_file"]).stat().st_mode & 0o777 == 0o600
