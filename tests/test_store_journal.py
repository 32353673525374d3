"""The update journal: entries replayed on load, torn tails, damage, compaction, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoshot import PrototypeClassifier, store
from protoshot.estimators import LinearClassifier, MahalanobisClassifier, load_estimator
from protoshot.store import Change, journal
from tests._crash_writer import label, shot

D = 6


def fitted(tmp_path: Path, estimator=None):
    rng = np.random.default_rng(0)
    model = estimator or PrototypeClassifier(normalization="l2")
    model.fit(rng.normal(size=(6, D)), ["a", "a", "b", "b", "c", "c"])
    model.save(tmp_path / "m")
    return model, tmp_path / "m"


def journal_path(folder: Path) -> Path:
    return folder / json.loads((folder / "config.json").read_text())["journal_file"]


def same(a, b) -> None:
    """Two estimators hold the same model (sums may differ in the last bits: a replay adds
    consecutive updates in one pass)."""
    x = np.random.default_rng(9).normal(size=(20, D))
    assert a.classes_.tolist() == b.classes_.tolist()
    np.testing.assert_array_equal(a.shot_counts_, b.shot_counts_)
    np.testing.assert_array_equal(a.support_, b.support_)
    np.testing.assert_array_equal(a.updated_, b.updated_)
    np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(x), rtol=1e-9, atol=1e-12)
    assert a.metadata_ == b.metadata_


def test_changes_round_trip_through_a_record(tmp_path: Path) -> None:
    changes = [
        Change("add", ("a", "b"), np.ones((2, 3), np.float32), time=1.5),
        Change("name", (3,), np.full((1, 3), 0.25), time=2.0),
        Change("remove", (True,)),
        Change("metadata", metadata={"rejection": {"threshold": 0.5}}),
    ]
    path = tmp_path / "j.log"
    path.write_bytes(journal.begin("x" * 64) + journal.encode(changes))
    back = journal.read(tmp_path, "j.log", "x" * 64)
    assert back.position == store.Position("j.log", path.stat().st_size)
    for before, after in zip(changes, back.changes, strict=True):
        assert (after.op, after.labels, after.metadata, after.time) == (
            before.op, before.labels, before.metadata, before.time,
        )  # fmt: skip
        if before.vectors is not None:
            assert after.vectors.dtype == before.vectors.dtype
            np.testing.assert_array_equal(after.vectors, before.vectors)


@pytest.mark.parametrize(
    "estimator",
    [
        PrototypeClassifier(normalization="l2"),
        PrototypeClassifier("cosine", normalization="cl2n", prior_weight=0.5),
        LinearClassifier(normalization="l2"),
        MahalanobisClassifier(),
    ],
    ids=["prototypes", "named-prototypes", "linear", "mahalanobis"],
)
def test_committed_updates_are_replayed_exactly(tmp_path: Path, estimator) -> None:
    model, folder = fitted(tmp_path, estimator)
    arrays_before = {p.name for p in folder.glob("*.safetensors")}
    rng = np.random.default_rng(1)
    model.partial_fit(rng.normal(size=(2, D)), ["a", "d"], class_embeddings={"d": np.ones(D)})
    model.commit(folder)
    model.add_class_embeddings({"a": rng.normal(size=D)})
    model.remove_classes(["b"])
    model.update([Change("metadata", metadata={"note": "kept"})])
    model.commit(folder)
    model.partial_fit(rng.normal(size=(3, D)), ["c", "c", "e"])
    model.commit(folder)
    assert {p.name for p in folder.glob("*.safetensors")} == arrays_before  # no snapshot
    same(model, load_estimator(folder))


def test_an_update_writes_its_own_bytes_not_the_models(tmp_path: Path) -> None:
    model, folder = fitted(tmp_path)
    model.partial_fit(np.zeros((500, D)), ["a"] * 500)
    model.save(folder, overwrite=True)  # a model far bigger than one update
    size = journal_path(folder).stat().st_size
    x = np.ones((1, D), np.float32)
    model.partial_fit(x, ["b"])
    entry = len(journal.encode(model._unsaved))
    model.commit(folder)
    assert journal_path(folder).stat().st_size - size == entry < 400
    assert model.commit(folder) == folder  # nothing new: nothing written
    assert journal_path(folder).stat().st_size - size == entry


def test_a_torn_last_entry_is_dropped_and_the_next_commit_cuts_it(tmp_path: Path) -> None:
    model, folder = fitted(tmp_path)
    model.partial_fit(np.ones((1, D)), ["a"])
    model.commit(folder)
    kept = load_estimator(folder)
    model.partial_fit(np.full((1, D), 2.0), ["b"])
    model.commit(folder)
    path = journal_path(folder)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 5)
    with pytest.warns(UserWarning, match="dropped an incomplete last entry"):
        torn = load_estimator(folder)
    same(torn, kept)
    torn.partial_fit(np.full((1, D), 3.0), ["c"])
    torn.commit(folder)  # appends where the complete entries end
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same(load_estimator(folder), torn)


def test_damage_before_the_last_entry_is_refused_and_named(tmp_path: Path) -> None:
    model, folder = fitted(tmp_path)
    for value in (1.0, 2.0, 3.0):
        model.partial_fit(np.full((1, D), value), ["a"])
        model.commit(folder)
    path = journal_path(folder)
    data = bytearray(path.read_bytes())
    first = len(journal.begin("0" * 64))
    data[first + 40] ^= 0xFF  # inside entry 1 of 3
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"entry 1 \(byte \d+\) is damaged and later entries"):
        load_estimator(folder)


def test_a_journal_of_another_snapshot_is_refused(tmp_path: Path) -> None:
    _, folder = fitted(tmp_path)
    journal_path(folder).write_bytes(journal.begin("f" * 64))
    with pytest.raises(ValueError, match="follows another snapshot"):
        load_estimator(folder)


def test_an_entry_that_does_not_apply_is_named(tmp_path: Path) -> None:
    model, folder = fitted(tmp_path)
    model._unsaved = [Change("remove", ("zebra",))]  # recorded, never applied here
    model.commit(folder)
    with pytest.raises(ValueError, match=r"journal's updates do not apply: unknown classes"):
        load_estimator(folder)


def test_commit_needs_the_folder_the_model_came_from(tmp_path: Path) -> None:
    model, folder = fitted(tmp_path)
    with pytest.raises(ValueError, match="was not read from or saved to"):
        model.commit(tmp_path)
    fresh = PrototypeClassifier().fit(np.ones((2, D)), [0, 1])
    with pytest.raises(ValueError, match="was not read from or saved to"):
        fresh.commit(folder)
    other = load_estimator(folder)
    other.save(folder, overwrite=True)  # the folder moves on without `model`
    model.partial_fit(np.ones((1, D)), ["a"])
    with pytest.raises(ValueError, match="was saved again since this model was read"):
        model.commit(folder)


def test_a_folder_without_a_journal_is_saved_whole_then_journaled(tmp_path: Path) -> None:
    _, folder = fitted(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["format_version"] = 2  # as protoshot wrote it before the journal
    del config["journal_file"]
    (folder / "config.json").write_text(json.dumps(config))
    old = load_estimator(folder)
    old.partial_fit(np.ones((1, D)), ["a"])
    old.commit(folder)
    assert json.loads((folder / "config.json").read_text())["format_version"] == 3
    old.partial_fit(np.ones((1, D)), ["b"])
    old.commit(folder)
    same(load_estimator(folder), old)


def test_compaction_folds_the_journal_and_keeps_updates_made_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, folder = fitted(tmp_path)
    monkeypatch.setattr(store, "COMPACT_AFTER_BYTES", 0)
    for value in range(20):  # the journal outgrows the snapshot
        model.partial_fit(np.full((1, D), float(value)), ["a"])
        model.commit(folder)
    assert store.needs_compaction(folder, model._position)
    old_journal = journal_path(folder)
    compaction = model.write_snapshot(folder)  # no lock: updates go on
    model.partial_fit(np.full((1, D), 7.0), ["z"])
    model.commit(folder)
    model.install_snapshot(folder, compaction)
    assert journal_path(folder) != old_journal
    replay = store.read_model(folder)
    assert [c.labels for c in replay.changes] == [("z",)]  # moved to the new journal
    same(load_estimator(folder), model)
    model.partial_fit(np.full((1, D), 8.0), ["a"])
    model.commit(folder)  # appends to the new journal
    same(load_estimator(folder), model)
    # the files of the snapshot before stay one more snapshot, for a reader that just read it
    model.save(folder, overwrite=True)
    assert len(list(folder.glob("journal-*.log"))) == 2
    assert len(list(folder.glob("prototypes-*.safetensors"))) == 2


def test_install_refuses_uncommitted_updates(tmp_path: Path) -> None:
    model, folder = fitted(tmp_path)
    compaction = model.write_snapshot(folder)
    model.partial_fit(np.ones((1, D)), ["a"])
    with pytest.raises(ValueError, match="commit the model's updates"):
        model.install_snapshot(folder, compaction)


OPS = st.sampled_from(["add", "add-new", "name", "remove", "commit"])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(OPS, min_size=1, max_size=12), seed=st.integers(0, 2**16))
def test_any_sequence_of_committed_updates_replays_to_the_live_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[str], seed: int
) -> None:
    model, folder = fitted(tmp_path_factory.mktemp("j"))
    rng = np.random.default_rng(seed)
    for n, op in enumerate(ops):
        classes = model.classes_.tolist()
        if op == "add":
            model.partial_fit(rng.normal(size=(2, D)), rng.choice(classes, 2).tolist())
        elif op == "add-new":
            model.partial_fit(rng.normal(size=(1, D)), [f"new{n}"])
        elif op == "name":
            model.add_class_embeddings({classes[0]: rng.normal(size=D)})
        elif op == "remove" and len(classes) > 1:
            model.remove_classes([classes[-1]])
        elif op == "commit":
            model.commit(folder)
    model.commit(folder)
    same(load_estimator(folder), model)


# --------------------------------------------------------------------------- kill -9
def test_kill_9_during_updates_and_compaction_loses_nothing_acknowledged(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    PrototypeClassifier(temperature=1.0).fit(np.concatenate([shot(0), shot(1)]), [
        label(0), label(1)
    ]).save(folder)  # fmt: skip
    writer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_crash_writer.py")), str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )  # fmt: skip
    rng = np.random.default_rng(0)
    acknowledged, rounds, compactions, reads = 1, 60, 0, 0
    started = time.monotonic()
    try:
        for _ in range(rounds):
            writer.stdin.write("go\n")
            pid = int(writer.stdout.readline().split()[1])
            deadline = time.monotonic() + rng.uniform(0.05, 0.4)
            while time.monotonic() < deadline:  # a reader in another process, during writes
                check_prefix(folder, acknowledged=0)
                reads += 1
            os.kill(pid, signal.SIGKILL)
            for line in iter(writer.stdout.readline, "done\n"):
                acknowledged = max(acknowledged, int(line.split()[1]))
            compactions += len(list(folder.glob("journal-*.log"))) > 1
            check_prefix(folder, acknowledged)
    finally:
        writer.kill()
        writer.wait()
    assert time.monotonic() - started < 60
    assert acknowledged > rounds and compactions > rounds // 4 and reads > rounds


def check_prefix(folder: Path, acknowledged: int) -> None:
    """The folder loads, holds every acknowledged shot, and holds shots 0..n-1 exactly (an
    update in flight when the writer died is there whole or not at all)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a torn tail, dropped
        model = load_estimator(folder)
    n = len(model.support_)
    assert n >= acknowledged + 1, f"acknowledged shot {acknowledged} is lost ({n} shots)"
    np.testing.assert_array_equal(model.support_, np.concatenate([shot(k) for k in range(n)]))
    assert model.classes_[model.support_codes_].tolist() == [label(k) for k in range(n)]


def test_a_stale_copy_cannot_commit_over_an_update_another_copy_committed(tmp_path: Path) -> None:
    import copy

    model, folder = fitted(tmp_path)
    stale = copy.copy(model)
    model.partial_fit(np.ones((1, D)), ["e"])
    model.commit(folder)
    stale.partial_fit(np.ones((1, D)), ["f"])
    with pytest.raises(ValueError, match="holds an update committed after this model was read"):
        stale.commit(folder)
    assert "e" in load_estimator(folder).classes_.tolist()  # the acknowledged one is kept


def test_a_snapshot_needs_committed_updates_and_the_current_journal(tmp_path: Path) -> None:
    model, folder = fitted(tmp_path)
    model.partial_fit(np.ones((1, D)), ["b"])
    with pytest.raises(ValueError, match="commit the model's updates before writing a snapshot"):
        model.write_snapshot(folder)  # else they would be in the snapshot and replayed again
    model.commit(folder)
    old = model.write_snapshot(folder)
    model.install_snapshot(folder, model.write_snapshot(folder))
    model.partial_fit(np.ones((1, D)), ["f"])
    model.commit(folder)
    with pytest.raises(ValueError, match="taken before the folder's last compaction"):
        model.install_snapshot(folder, old)
    same(load_estimator(folder), model)


def test_compaction_moves_whole_entries_only(tmp_path: Path) -> None:
    model, folder = fitted(tmp_path)
    model.partial_fit(np.ones((1, D)), ["a"])
    model.commit(folder)
    with journal_path(folder).open("ab") as f:
        f.write(journal.encode([Change("add", ("b",), np.ones((1, D)))])[:30])  # a crash
    with pytest.warns(UserWarning, match="incomplete last entry"):
        loaded = load_estimator(folder)
    loaded.install_snapshot(folder, loaded.write_snapshot(folder))
    loaded.partial_fit(np.full((1, D), 2.0), ["c"])
    loaded.commit(folder)
    same(load_estimator(folder), loaded)
