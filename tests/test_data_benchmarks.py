"""Known benchmarks (the shared local copies), the data dir, and downloads from file URLs."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from protoshot.data import benchmarks as bench
from protoshot.data import data_dir, load_benchmark, load_source
from tests._embed_fixtures import BANKING77, DATA_DIR, OMNIGLOT, SNIPS


# -- known benchmarks (the shared local copies) ------------------------------------------------
def test_banking77_by_name_and_by_folder() -> None:
    test = load_source("banking77:test", root=DATA_DIR)
    assert len(test) == 3080 and len(test.classes) == 77
    assert set(np.unique(test.labels, return_counts=True)[1]) == {40}
    assert test.ids[0] == "test/0" and test.items[0] == "How do I locate my card?"
    every = load_source(BANKING77)
    assert len(every) == 13083 and every.ids[0] == "train/0"


def test_snips_survives_its_latin1_file() -> None:
    with pytest.warns(UserWarning, match=r"train_PlayMusic_full.json is not valid UTF-8"):
        train = load_benchmark("snips", "train", root=DATA_DIR)
    assert len(train) == 13784 and len(train.classes) == 7
    validation = load_source(f"{SNIPS}:validation")
    assert len(validation) == 700
    assert validation.items[0].startswith("I'd like to have this track onto my")


def test_omniglot_evaluation_split() -> None:
    samples = load_source(OMNIGLOT / "images_evaluation")
    assert len(samples) == 13180 and len(samples.classes) == 659 and not samples.skipped


def test_unknown_or_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no file, folder or known benchmark 'nope'"):
        load_source("nope")
    with pytest.raises(ValueError, match=r"banking77 \(test\) not found in .*banking77") as err:
        load_source("banking77:test", root=tmp_path)
    message = str(err.value)  # says how to point at the data, in the CLI's words
    assert all(hint in message for hint in ("PROTOSHOT_DATA_DIR", "--data", "--download"))
    assert "root=" not in message and "download=True" not in message
    with pytest.raises(
        ValueError, match=r"banking77 has no split 'dev'; splits: \['train', 'test'"
    ):
        load_source("banking77:dev", root=DATA_DIR)
    with pytest.raises(ValueError, match="unknown benchmark 'mnist'"):
        load_benchmark("mnist")
    arrays = tmp_path / "x.npz"
    np.savez(arrays, embeddings=np.zeros((1, 2)), labels=["a"])
    with pytest.raises(
        ValueError, match=r"x.npz holds embeddings already: read it with load_table"
    ):
        load_source(arrays)


def test_data_dir_resolution(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROTOSHOT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PROTOSHOT_DATA_DIR", str(tmp_path / "env"))
    assert data_dir(tmp_path / "given") == tmp_path / "given"  # the argument first
    assert data_dir() == tmp_path / "env"  # then the environment
    monkeypatch.delenv("PROTOSHOT_DATA_DIR")
    assert data_dir() == tmp_path / "cache" / "data"  # then the download folder in the cache


def test_data_dir_never_guesses_a_development_data_folder(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "shared" / "data" / "banking77").mkdir(parents=True)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.delenv("PROTOSHOT_DATA_DIR", raising=False)
    monkeypatch.setenv("PROTOSHOT_CACHE_DIR", str(tmp_path / "cache"))
    assert data_dir() == tmp_path / "cache" / "data"
    with pytest.raises(ValueError, match=r"not found in .*cache.*PROTOSHOT_DATA_DIR"):
        load_benchmark("banking77", "test")


def test_benchmark_names_read_from_the_data_dir_in_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("PROTOSHOT_DATA_DIR", str(DATA_DIR))
    assert len(load_benchmark("banking77", "test")) == 3080


# -- downloads (file:// URLs stand in for the network) -----------------------------------------
def test_download_checks_digests_before_keeping_files(tmp_path: Path, monkeypatch) -> None:
    local = {
        r.path: bench.Remote((BANKING77 / r.path).as_uri(), r.path, r.digest)
        for r in bench.SOURCES["banking77"]
    }
    monkeypatch.setitem(bench.SOURCES, "banking77", tuple(local.values()))
    samples = load_source("banking77:test", root=tmp_path / "data", download=True)
    assert len(samples) == 3080
    copied = tmp_path / "data" / "banking77" / "banking_data" / "train.csv"
    assert copied.read_bytes() == (BANKING77 / "banking_data" / "train.csv").read_bytes()

    bad = bench.Remote(local["banking_data/test.csv"].url, "banking_data/test.csv", "0" * 64)
    monkeypatch.setitem(bench.SOURCES, "banking77", (bad,))
    with pytest.raises(ValueError, match=r"has sha256 d12d6e3b.*expected 0000.*nothing was kept"):
        bench.download_benchmark("banking77", tmp_path / "other")
    assert not [p for p in (tmp_path / "other").rglob("*") if p.is_file()]  # no temporary either


def test_download_unpacks_omniglot_zips_flat(tmp_path: Path, monkeypatch) -> None:
    archive = tmp_path / "images_evaluation.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for alphabet, character in [("Angelic", "character01"), ("Angelic", "character02")]:
            for drawer in ("01", "02"):
                source = next((OMNIGLOT / "images_evaluation").glob(f"{alphabet}__*/*.png"))
                name = f"images_evaluation/{alphabet}/{character}/0965_{drawer}.png"
                zf.writestr(name, source.read_bytes())
        zf.writestr("images_evaluation/../../evil/x/y.png", b"no")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    remote = bench.Remote(archive.as_uri(), "images_evaluation", md5, "md5")
    monkeypatch.setitem(bench.SOURCES, "omniglot", (remote,))
    samples = load_source("omniglot:evaluation", root=tmp_path / "data", download=True)
    assert samples.classes == ["Angelic__character01", "Angelic__character02"]
    assert len(samples) == 4 and not (tmp_path / "evil").exists()
    assert [p.name for p in (tmp_path / "data" / "omniglot").iterdir()] == ["images_evaluation"]


def test_a_failed_folder_download_leaves_no_folder(tmp_path: Path, monkeypatch) -> None:
    archive = tmp_path / "images_evaluation.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images_evaluation/Angelic/character01/0965_01.png", b"png")
    remote = bench.Remote(archive.as_uri(), "images_evaluation", "0" * 32, "md5")
    monkeypatch.setitem(bench.SOURCES, "omniglot", (remote,))
    folder = tmp_path / "data" / "omniglot"
    with pytest.raises(ValueError, match=r"has md5 .*expected 0000.*nothing was kept"):
        bench.download_benchmark("omniglot", folder)
    assert list(folder.iterdir()) == []


def test_a_folder_put_in_place_by_another_download_is_kept(tmp_path: Path, monkeypatch) -> None:
    archive = tmp_path / "images_evaluation.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images_evaluation/Angelic/character01/0965_01.png", b"ours")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(
        bench.SOURCES,
        "omniglot",
        (bench.Remote(archive.as_uri(), "images_evaluation", md5, "md5"),),
    )
    folder = tmp_path / "omniglot"
    unpack = bench._unpack_classes

    def racing_unpack(zipped: Path, dest: Path) -> None:  # another process finishes first
        unpack(zipped, dest)
        (folder / "images_evaluation" / "Other__character01").mkdir(parents=True)

    monkeypatch.setattr(bench, "_unpack_classes", racing_unpack)
    bench.download_benchmark("omniglot", folder)
    assert [p.name for p in folder.iterdir()] == ["images_evaluation"]
    assert [p.name for p in (folder / "images_evaluation").iterdir()] == ["Other__character01"]
