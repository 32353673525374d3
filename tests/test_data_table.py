"""EmbeddingTable (Parquet) and already-embedded numpy arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protoshot.data import EmbeddingTable, load_table, read_arrays


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


@pytest.mark.parametrize("previous", [False, True])
def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch, previous: bool
) -> None:
    path = tmp_path / "t.parquet"
    if previous:
        _table().save(path)
    before = path.read_bytes() if previous else None

    def failing_write(table: pa.Table, where: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half a table")  # some bytes, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", failing_write)
    with pytest.raises(OSError, match="No space left"):
        _table(4).save(path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == (["t.parquet"] if previous else [])
    if previous:
        assert path.read_bytes() == before
        monkeypatch.undo()
        assert len(EmbeddingTable.load(path)) == 6


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
    with pytest.raises(ValueError, match=r"v.npy holds vectors only: give its labels"):
        read_arrays(tmp_path / "v.npy")
    np.savez(tmp_path / "o.npz", embeddings=vectors, labels=np.array([{}, {}, {}]))
    with pytest.raises(ValueError, match="object arrays, which protoshot never unpickles"):
        read_arrays(tmp_path / "o.npz")
    np.savez(tmp_path / "nolabels.npz", embeddings=vectors)
    with pytest.raises(ValueError, match=r"no labels column: expected one of \['labels'"):
        read_arrays(tmp_path / "nolabels.npz")


def test_vectors_are_read_from_any_float_column(tmp_path: Path) -> None:
    from protoshot.data.table import _floats

    rows = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    for kind in (pa.float16(), pa.float32(), pa.float64()):
        column = pa.array(rows.tolist(), pa.list_(kind, 3))
        pq.write_table(
            pa.table({"embedding": column, "label": list("aabb")}), tmp_path / "t.parquet"
        )
        got = EmbeddingTable.load(tmp_path / "t.parquet").vectors
        np.testing.assert_allclose(got, rows, rtol=1e-3 if kind == pa.float16() else 1e-7)
    flat = pa.array(rows.ravel())
    np.testing.assert_array_equal(_floats(flat.slice(4, 5)), rows.ravel()[4:9].astype(np.float32))
    with_null = pa.array([1.0, None, 3.0])
    assert np.isnan(_floats(with_null)[1])


def test_a_folder_of_shards_reads_as_one_table(tmp_path: Path) -> None:
    from protoshot.pipeline import is_table

    def shard(name: str, ids: list[str], fingerprint: str = "fp") -> None:
        EmbeddingTable.from_arrays(
            np.full((len(ids), 3), float(len(name))), [i[0] for i in ids], ids=ids,
            model="m", fingerprint=fingerprint,
        ).save(tmp_path / f"part-{name}.parquet")  # fmt: skip

    shard("a", ["x1", "y1"])
    shard("bb", ["y1", "z1"])  # y1 again: a retried batch
    (tmp_path / ".part-c.parquet.0123456789abcdef.tmp").write_bytes(b"torn")
    assert is_table(tmp_path)
    table = EmbeddingTable.load(tmp_path)
    assert sorted(table.ids.tolist()) == ["x1", "y1", "z1"]
    assert table.classes == ["x", "y", "z"] and table.fingerprint == "fp"
    shard("ccc", ["w1"], fingerprint="other")
    with pytest.raises(ValueError, match="shards of different embedders"):
        EmbeddingTable.load(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="a folder with no Parquet file"):
        EmbeddingTable.load(tmp_path / "empty")
