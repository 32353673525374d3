"""Readers, known benchmarks, downloads (from local file URLs) and the EmbeddingTable."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protoshot import _download
from protoshot.data import (
    EmbeddingTable,
    Samples,
    data_dir,
    load_benchmark,
    load_source,
    load_table,
    read_arrays,
    read_hf_dataset,
    read_image_folder,
    read_table,
)
from tests._embed_fixtures import BANKING77, DATA_DIR, OMNIGLOT, SNIPS, write_images


# -- text tables -------------------------------------------------------------------------------
def _write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        header = sep.join(rows[0])
        lines = [sep.join(f'"{v}"' if sep == "," else str(v) for v in row.values()) for row in rows]
        path.write_text("\n".join([header, *lines]) + "\n")
    return path


ROWS = [
    {"Utterance": "hello, there", "intent": "greet", "extra": 1},
    {"Utterance": "bye", "intent": "leave", "extra": 2},
    {"Utterance": "hi", "intent": "greet", "extra": 3},
]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_read_table_detects_common_column_names(tmp_path: Path, suffix: str) -> None:
    samples = read_table(_write_rows(tmp_path / f"t{suffix}", ROWS))
    assert samples.items == ["hello, there", "bye", "hi"]
    assert samples.labels.tolist() == ["greet", "leave", "greet"]
    assert samples.ids.tolist() == ["0", "1", "2"] and samples.modality == "text"
    assert samples.classes == ["greet", "leave"]


def test_read_table_with_named_columns(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "t.jsonl", ROWS)
    samples = read_table(path, text_column="intent", label_column="extra")
    assert samples.items == ["greet", "leave", "greet"] and samples.labels.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match=r"no text column 'body'; columns: \['Utterance'"):
        read_table(path, text_column="body")


def test_read_table_without_a_detectable_column_lists_the_columns(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "t.csv", [{"body": "x", "intent": "a"}])
    with pytest.raises(ValueError, match=r"no text column: expected one of .*columns: \['body'"):
        read_table(path)


def test_read_table_rejects_bad_rows_and_files(tmp_path: Path) -> None:
    missing = _write_rows(tmp_path / "m.jsonl", [{"text": "a", "label": None}])
    with pytest.raises(ValueError, match=r"m.jsonl, row 0: the label is missing"):
        read_table(missing)
    numeric = _write_rows(tmp_path / "n.jsonl", [{"text": 5, "label": "a"}])
    with pytest.raises(ValueError, match="row 0: text must be a string, got 5"):
        read_table(numeric)
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"text": "a", "label": "x"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"b.jsonl, line 2: not valid JSON"):
        read_table(broken)
    with pytest.raises(ValueError, match=r"cannot read .*t.xlsx: expected a .csv"):
        read_table(tmp_path / "t.xlsx")


def test_non_utf8_text_is_decoded_as_latin1_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nCita Rom\xe1ntica,music\n".encode("latin-1"))
    with pytest.warns(UserWarning, match=r"not valid UTF-8 \(byte 0xe1 at offset 19\)"):
        samples = read_table(path)
    assert samples.items == ["Cita Romántica"]
    assert read_table(path, encoding="cp1252").items == ["Cita Romántica"]


# -- image folders -----------------------------------------------------------------------------
def test_image_folder_reads_classes_and_skips_bad_files_up_front(tmp_path: Path) -> None:
    root = write_images(tmp_path / "imgs", {"cat": 3, "dog": 2, "empty": 0}, mode="1")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / "broken.png").write_bytes(b"garbage")
    (root / "stray.png").write_bytes(b"")
    (root / ".hidden").mkdir()
    with pytest.warns(UserWarning, match=r"skipped 4 inputs .*notes.txt: not an image file"):
        samples = read_image_folder(root)
    assert samples.modality == "image" and len(samples) == 5
    assert samples.classes == ["cat", "dog"]
    assert samples.ids.tolist()[:2] == ["cat/000.png", "cat/001.png"]
    assert all(isinstance(item, Path) for item in samples.items)
    reasons = " | ".join(samples.skipped)
    assert "broken.png: unreadable image" in reasons and "empty: empty class folder" in reasons
    assert "stray.png: not in a class folder" in reasons


def test_image_folder_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no images under"):
        read_image_folder(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        read_image_folder(tmp_path / "missing")


# -- Hugging Face datasets ---------------------------------------------------------------------
def test_hf_dataset_saved_to_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    train = datasets.Dataset.from_dict(
        {"sentence": ["bad", "good", "fine"], "label": [0, 1, 1]}, features=features
    )
    test = datasets.Dataset.from_dict({"sentence": ["meh"], "label": [0]}, features=features)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(tmp_path / "dd")
    train.save_to_disk(tmp_path / "single")

    both = load_source(tmp_path / "dd")
    assert both.items == ["bad", "good", "fine", "meh"]
    assert both.labels.tolist() == ["neg", "pos", "pos", "neg"]
    assert both.ids.tolist() == ["train/0", "train/1", "train/2", "test/0"]
    assert load_source(f"{tmp_path / 'dd'}:test").items == ["meh"]
    assert read_hf_dataset(tmp_path / "single").labels.tolist() == ["neg", "pos", "pos"]
    with pytest.raises(ValueError, match=r"no split 'dev'; splits: \['train', 'test'\]"):
        read_hf_dataset(tmp_path / "dd", split="dev")


def test_hf_dataset_with_an_image_column(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    images = [Image.new("L", (8, 8), value) for value in (0, 128)]
    dataset = datasets.Dataset.from_dict({"image": images, "label": ["a", "b"]})
    dataset.save_to_disk(tmp_path / "ds")
    samples = load_source(tmp_path / "ds")
    assert samples.modality == "image" and samples.labels.tolist() == ["a", "b"]
    assert samples.items[1].getpixel((0, 0)) == 128


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
    with pytest.raises(ValueError, match=r"banking77 \(test\) not found in .*download=True"):
        load_source("banking77:test", root=tmp_path)
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
    assert data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("PROTOSHOT_DATA_DIR", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    monkeypatch.delenv("PROTOSHOT_DATA_DIR")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    assert data_dir() == tmp_path / "shared" / "data"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROTOSHOT_CACHE_DIR", str(tmp_path / "cache"))
    assert data_dir() == tmp_path / "cache" / "data"


# -- downloads (file:// URLs stand in for the network) -----------------------------------------
def test_download_checks_digests_before_keeping_files(tmp_path: Path, monkeypatch) -> None:
    local = {
        r.path: _download.Remote((BANKING77 / r.path).as_uri(), r.path, r.digest)
        for r in _download.SOURCES["banking77"]
    }
    monkeypatch.setitem(_download.SOURCES, "banking77", tuple(local.values()))
    samples = load_source("banking77:test", root=tmp_path / "data", download=True)
    assert len(samples) == 3080
    copied = tmp_path / "data" / "banking77" / "banking_data" / "train.csv"
    assert copied.read_bytes() == (BANKING77 / "banking_data" / "train.csv").read_bytes()

    bad = _download.Remote(local["banking_data/test.csv"].url, "banking_data/test.csv", "0" * 64)
    monkeypatch.setitem(_download.SOURCES, "banking77", (bad,))
    with pytest.raises(ValueError, match=r"has sha256 d12d6e3b.*expected 0000.*nothing was kept"):
        _download.download("banking77", tmp_path / "other")
    assert not list((tmp_path / "other").rglob("*.csv"))


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
    remote = _download.Remote(archive.as_uri(), "images_evaluation", md5, "md5")
    monkeypatch.setitem(_download.SOURCES, "omniglot", (remote,))
    samples = load_source("omniglot:evaluation", root=tmp_path / "data", download=True)
    assert samples.classes == ["Angelic__character01", "Angelic__character02"]
    assert len(samples) == 4 and not (tmp_path / "evil").exists()


# -- EmbeddingTable ----------------------------------------------------------------------------
def _table(n: int = 6, dim: int = 3, labels: object = None) -> EmbeddingTable:
    rng = np.random.default_rng(0)
    return EmbeddingTable.from_arrays(
        rng.normal(size=(n, dim)),
        labels if labels is not None else ["b", "a"] * (n // 2),
        model="minilm",
        fingerprint="ab" * 32,
    )


def test_table_round_trip_keeps_everything(tmp_path: Path) -> None:
    table = _table()
    path = table.save(tmp_path / "t.parquet")
    loaded = EmbeddingTable.load(path)
    np.testing.assert_array_equal(loaded.vectors, table.vectors)
    assert loaded.vectors.dtype == np.float32 and loaded.dim == 3 and len(loaded) == 6
    assert loaded.labels.tolist() == table.labels.tolist() and loaded.classes == ["a", "b"]
    assert loaded.ids.tolist() == ["0", "1", "2", "3", "4", "5"]
    assert (loaded.model, loaded.fingerprint) == ("minilm", "ab" * 32)
    schema = pq.read_schema(path)
    assert schema.field("embedding").type == pa.list_(pa.float32(), 3)
    assert json.loads(schema.metadata[b"protoshot"])["classes"] == ["a", "b"]


def test_table_refuses_to_overwrite(tmp_path: Path) -> None:
    path = _table().save(tmp_path / "t.parquet")
    with pytest.raises(FileExistsError, match=r"t.parquet exists; pass overwrite=True"):
        _table(4).save(path)
    _table(4).save(path, overwrite=True)
    assert len(EmbeddingTable.load(path)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temporary left over


def test_table_is_plain_parquet_for_pandas(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(_table(labels=[3, 1, 3, 1, 2, 2]).save(tmp_path / "t.parquet"))
    assert list(frame.columns) == ["id", "label", "embedding"]
    assert frame["label"].tolist() == [3, 1, 3, 1, 2, 2] and len(frame["embedding"][0]) == 3


def test_table_loads_variable_list_columns_written_by_others(tmp_path: Path) -> None:
    rows = {"label": ["x", "y"], "embedding": [[1.0, 2.0], [3.0, 4.0]]}
    pq.write_table(pa.table(rows), tmp_path / "other.parquet")
    loaded = load_table(tmp_path / "other.parquet")
    np.testing.assert_array_equal(loaded.vectors, [[1, 2], [3, 4]])
    assert loaded.model == "" and loaded.ids.tolist() == ["0", "1"]
    ragged = {"label": ["x", "y"], "embedding": [[1.0], [3.0, 4.0]]}
    pq.write_table(pa.table(ragged), tmp_path / "ragged.parquet")
    with pytest.raises(ValueError, match="vectors have different lengths"):
        load_table(tmp_path / "ragged.parquet")
    pq.write_table(pa.table({"label": ["x"]}), tmp_path / "bare.parquet")
    with pytest.raises(ValueError, match=r"no 'embedding' column; columns: \['label'\]"):
        load_table(tmp_path / "bare.parquet")


def test_table_validation_messages() -> None:
    with pytest.raises(ValueError, match=r"labels and ids must have shape \[4\].*got \[3\]"):
        EmbeddingTable.from_arrays(np.zeros((4, 2)), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"vectors must be float32 \[n_samples, dim\]"):
        EmbeddingTable.from_arrays(np.zeros(4), ["a"] * 4)
    with pytest.raises(ValueError, match=r"labels \['c'\] are not among the classes"):
        EmbeddingTable.from_arrays(np.zeros((2, 2)), ["a", "c"], classes=["a", "b"])


@given(
    labels=st.lists(st.sampled_from(["x", "y", "zz"]), min_size=1, max_size=12),
    dim=st.integers(1, 5),
)
def test_table_save_load_round_trip(labels: list[str], dim: int) -> None:
    import tempfile

    table = _table(len(labels), dim, labels)
    with tempfile.TemporaryDirectory() as folder:
        loaded = EmbeddingTable.load(table.save(Path(folder) / "t.parquet"))
    np.testing.assert_array_equal(loaded.vectors, table.vectors)
    assert loaded.labels.tolist() == labels and loaded.classes == sorted(set(labels))


def test_read_arrays(tmp_path: Path) -> None:
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.savez(tmp_path / "a.npz", features=vectors, y=np.array([1, 0, 1]))
    table = load_table(tmp_path / "a.npz")
    np.testing.assert_array_equal(table.vectors, vectors)
    assert table.labels.tolist() == [1, 0, 1] and table.classes == [0, 1]
    np.save(tmp_path / "v.npy", vectors)
    np.save(tmp_path / "l.npy", np.array(["a", "b", "a"]))
    assert read_arrays(tmp_path / "v.npy", labels=tmp_path / "l.npy").classes == ["a", "b"]
    with pytest.raises(ValueError, match=r"v.npy holds vectors only: pass labels="):
        read_arrays(tmp_path / "v.npy")
    np.savez(tmp_path / "o.npz", embeddings=vectors, labels=np.array([{}, {}, {}]))
    with pytest.raises(ValueError, match="object arrays, which protoshot never unpickles"):
        read_arrays(tmp_path / "o.npz")
    np.savez(tmp_path / "nolabels.npz", embeddings=vectors)
    with pytest.raises(ValueError, match=r"no labels column: expected one of \['labels'"):
        read_arrays(tmp_path / "nolabels.npz")


def test_samples_check_lengths() -> None:
    with pytest.raises(ValueError, match="one entry per sample, got 2, 1 and 2"):
        Samples(["a", "b"], np.array(["x"]), np.array(["0", "1"]), "text")
