"""Embedding on Ray: the same vectors as one process, every row once, resuming, clear failures.

A local Ray (2 logical CPUs) is started once for the module; the embedder is the bundled MiniLM.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import protoshot.cli._commands  # noqa: F401  (registers the commands)
from protoshot.cli import app
from protoshot.data import EmbeddingTable, load_source
from tests.conftest import DATA_DIR

ray = pytest.importorskip("ray")
runner = CliRunner()


def test_repeated_rows_get_their_own_ids_and_files_are_not_read(tmp_path: Path) -> None:
    from protoshot.distributed import row_id, source_ids

    image = tmp_path / "a.png"
    image.write_bytes(b"not read")
    ids = source_ids(["hi", "hi", "hi", "yo", image], ["g", "g", "x", "g", "c"])
    assert len(set(ids)) == 5 and ids[0] == row_id("hi", "g") and ids[2] == row_id("hi", "x")
    assert source_ids(["hi", "hi"], ["g", "g"]) == ids[:2]  # the same on every run


def test_resuming_refuses_a_folder_of_another_model(tmp_path: Path) -> None:
    from protoshot.distributed import done_ids

    EmbeddingTable.from_arrays(np.ones((1, 2)), ["a"], ids=["k"], model="other").save(
        tmp_path / "part-0.parquet"
    )
    assert done_ids(tmp_path) == {"k"}
    with pytest.raises(ValueError, match="holds embeddings by 'other', not 'minilm'"):
        done_ids(tmp_path, "minilm")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    import cloudpickle

    from protoshot.distributed import connect

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the factories below
    connect()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], np.ndarray]:
    samples = load_source("banking77:test", root=DATA_DIR)
    return list(samples.items[:240]), samples.labels[:240]


def write_csv(path: Path, texts: list[str], labels: np.ndarray) -> Path:
    import csv

    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["text", "label"])
        out.writerows(zip(texts, labels.tolist(), strict=True))
    return path


@pytest.mark.slow
def test_ray_gives_the_vectors_of_one_process_and_resumes(
    local_ray, texts, tmp_path: Path, cache_dir: Path
) -> None:
    source = write_csv(tmp_path / "data.csv", *texts)
    out = tmp_path / "shards"
    result = runner.invoke(
        app, ["embed", str(source), "--model", "minilm", "-o", str(out), "--engine", "ray",
              "--json", "--cache-dir", str(cache_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["embedded"] == 240 and summary["already_done"] == 0
    single = tmp_path / "single.parquet"
    assert runner.invoke(app, ["embed", str(source), "--model", "minilm", "-o", str(single),
                               "--cache-dir", str(cache_dir)]).exit_code == 0  # fmt: skip
    ray_table, one = EmbeddingTable.load(out), EmbeddingTable.load(single)
    assert ray_table.fingerprint == one.fingerprint and ray_table.model == "minilm"
    by_text = dict(zip(texts[0], one.vectors, strict=True))
    from protoshot.distributed import row_id

    order = {key: i for i, key in enumerate(ray_table.ids.tolist())}
    for text, label in zip(*texts, strict=True):
        got = ray_table.vectors[order[row_id(text, label)]]
        np.testing.assert_allclose(got, by_text[text], atol=1e-5)
    again = runner.invoke(app, ["embed", str(source), "--model", "minilm", "-o", str(out),
                                "--engine", "ray", "--json", "--cache-dir", str(cache_dir)])  # fmt: skip
    assert json.loads(again.stdout)["embedded"] == 0  # everything was there
    evaluated = runner.invoke(app, ["evaluate", str(out), "--ways", "5", "--shots", "1",
                                    "--queries", "3", "--episodes", "20", "--json"])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.stderr  # the folder is a table


class DiesOnce:
    """An embedder factory whose first embedding call, in whichever actor makes it, kills that
    actor's process (``os._exit``): the marker file makes it happen once in the whole job."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self):
        from protoshot.embedders import CallableEmbedder

        marker = self.marker

        def fn(batch):
            import torch

            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return torch.stack([torch.tensor([float(len(t)), 1.0]) for t in batch])
            os._exit(1)  # killed mid-run, after some batches may have been written

        return CallableEmbedder(fn, name="length", modality="text")


@pytest.mark.slow
def test_an_actor_killed_mid_run_still_yields_every_row_once(
    local_ray, texts, tmp_path: Path
) -> None:
    from protoshot.distributed import embed_source, row_id

    items, labels = [f"{t} {i}" for i, t in enumerate(texts[0] * 5)], np.tile(texts[1], 5)
    embedded, _ = embed_source(
        items, labels, DiesOnce(str(tmp_path / "died")), tmp_path / "o", cache=tmp_path / "c"
    )
    assert (tmp_path / "died").exists()  # the actor did die
    table = EmbeddingTable.load(tmp_path / "o")
    assert sorted(table.ids.tolist()) == sorted(
        row_id(x, y) for x, y in zip(items, labels, strict=True)
    )
    assert embedded >= len(items)
    lengths = dict(zip(table.ids.tolist(), table.vectors[:, 0].tolist(), strict=True))
    assert all(lengths[row_id(x, y)] == len(x) for x, y in zip(items, labels, strict=True))


@pytest.mark.slow
def test_a_run_killed_half_way_resumes_where_it_stopped(
    local_ray, texts, tmp_path: Path, cache_dir: Path
) -> None:
    from protoshot.distributed import embed_source, row_id
    from protoshot.embedders import embed
    from protoshot.pipeline import embedder_for

    items, labels = texts
    out = tmp_path / "o"
    out.mkdir()
    # what a driver killed half way leaves: complete shards, and a shard that was being written
    half = EmbeddingTable.from_arrays(
        embed(items[:100], embedder_for("minilm"), cache=False), labels[:100],
        ids=[row_id(x, y) for x, y in zip(items[:100], labels[:100], strict=True)],
        model="minilm", fingerprint=embedder_for("minilm").fingerprint,
    )  # fmt: skip
    half.save(out / "part-0000000000000000.parquet")
    (out / ".part-1111111111111111.parquet.0123456789abcdef.tmp").write_bytes(b"PAR1 torn")
    embedded, done = embed_source(items, labels, "minilm", out, cache=cache_dir)
    assert (embedded, done) == (140, 100)
    table = EmbeddingTable.load(out)
    assert len(table) == 240 and len(set(table.ids.tolist())) == 240


@pytest.mark.slow
def test_actors_share_the_cpus_and_leave_room_for_reading(local_ray) -> None:
    from protoshot.distributed import actor_resources

    cpus = ray.cluster_resources()["CPU"]
    for workers in (1, 2, 4):
        asked = actor_resources(workers)["num_cpus"] * workers
        assert asked <= max(cpus - 1, cpus / 2) + 1e-9  # never every CPU: the reads need one
    with pytest.raises(ValueError, match="workers must be at least 1"):
        actor_resources(0)


@pytest.mark.slow
def test_a_worker_that_cannot_load_the_model_fails_with_its_reason(
    local_ray, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "d.csv", ["a", "b"], np.asarray(["x", "y"]))
    result = runner.invoke(app, ["embed", str(source), "--model", "st:/nonexistent/model", "-o",
                                 str(tmp_path / "o"), "--engine", "ray", "--no-cache"])  # fmt: skip
    assert result.exit_code == 1
    assert "a Ray worker failed: " in result.stderr and "/nonexistent/model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_an_address_that_does_not_answer_is_one_line_and_quick(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "d.csv", ["a", "b"], np.asarray(["x", "y"]))
    start = time.monotonic()
    result = runner.invoke(app, ["embed", str(source), "--model", "minilm", "-o",
                                 str(tmp_path / "o"), "--engine", "ray", "--address",
                                 "127.0.0.1:1"])  # fmt: skip
    assert result.exit_code == 1 and time.monotonic() - start < 30
    assert "no Ray cluster answers at 127.0.0.1:1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
