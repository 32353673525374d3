"""Embedding on a Ray cluster (``pip install 'protoshot[ray]'``): one model load per actor.

:func:`embed_dataset` maps a ``ray.data.Dataset`` of ``item`` / ``label`` rows through a pool of
actors, each holding one embedder (the same embedders as everywhere: same fingerprint, same
vectors), and each writing the rows it embedded to ``OUT/`` as a Parquet shard
(:class:`~protoshot.data.EmbeddingTable`'s schema, written atomically, so a killed actor leaves
no half shard). The shards together read as one table (``EmbeddingTable.load(OUT)``, or
``evaluate`` / ``fit`` on the folder). Each row's id is a hash of its item and label: a re-run
skips the rows already in ``OUT`` (an interrupted job resumes), and a batch written twice (an
actor killed after writing, its task retried) is read once.

Resources are sized from what the cluster offers: the actors share the CPUs (fractional
``num_cpus``) with room left for the read tasks, so a pool as large as the cluster never waits
for a CPU that cannot come; one GPU per actor where the cluster has enough of them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protoshot.cache import CacheArg
from protoshot.embedders import Embedder

#: Seconds to wait for a Ray cluster at an address before giving up.
CONNECT_TIMEOUT = 10.0
#: Rows per actor call, and so per Parquet shard.
SHARD_ROWS = 1024


def _ray() -> Any:
    from protoshot.embedders._runtime import require

    require("ray.data", "ray", "embedding on Ray")
    return require("ray", "ray", "embedding on Ray")


def row_id(item: Any, label: Any, occurrence: int = 0) -> str:
    """A stable id of a row: a SHA-256 of its item and label, and of ``occurrence`` (the
    same item and label met again in one source is another row).

    A text is hashed as it is; a file (a ``pathlib.Path``: an image folder's items) by its
    path, size and modification time, so listing a folder never reads every file on the driver.
    """
    digest = hashlib.sha256()
    if isinstance(item, os.PathLike):
        stat = Path(item).stat()
        item = f"{Path(item).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    digest.update(item.encode() if isinstance(item, str) else bytes(item))
    digest.update(f"\0{label}\0{occurrence}".encode())
    return digest.hexdigest()[:32]


def source_ids(items: Sequence[Any], labels: Sequence[Any] | np.ndarray) -> list[str]:
    """:func:`row_id` of each row of a source, repeats counted in order."""
    seen: dict[str, int] = {}
    ids = []
    for item, label in zip(items, labels, strict=True):
        first = row_id(item, label)
        ids.append(first if first not in seen else row_id(item, label, seen[first]))
        seen[first] = seen.get(first, 0) + 1
    return ids


def connect(address: str | None = None, *, timeout: float = CONNECT_TIMEOUT) -> None:
    """Join the Ray cluster at ``address`` (``host:port``, ``ray://host:port`` or ``auto``), or
    start a local one (``None``). An address that does not answer within ``timeout`` seconds
    raises ``ConnectionError`` naming it; Ray is never left waiting on it."""
    ray = _ray()
    if address not in (None, "auto", "local"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
        except (OSError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise ConnectionError(
                f"no Ray cluster answers at {address} ({reason}) within "
                f"{timeout:g} s; start one with `ray start --head`, or leave out --address to "
                "run a local Ray"
            ) from None
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
    if address in (None, "local"):
        options["num_cpus"] = os.cpu_count() or 1
    else:
        options["address"] = address
    try:
        ray.init(**options)
    except ConnectionError as err:
        raise ConnectionError(f"could not join the Ray cluster at {address}: {err}") from None


def actor_resources(workers: int) -> dict[str, float]:
    """Per-actor resources for ``workers`` actors on the connected cluster: the CPUs shared
    with room for the read and write tasks, and a GPU each where there are enough.

    Raises
    ------
    ValueError
        If the cluster has no CPU to give.
    """
    ray = _ray()
    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if cpus <= 0:
        raise ValueError("the Ray cluster offers no CPU; add a node or a worker with CPUs")
    # one CPU's share kept for the read tasks: a pool that asks for every CPU would wait forever
    share = min(1.0, max(cpus - 1.0, cpus / 2) / workers)
    resources = {"num_cpus": round(share, 3)}
    if gpus >= workers:
        resources["num_gpus"] = 1.0
    return resources


class _EmbedAndWrite:
    """A Ray actor: one embedder, loaded once; each batch embedded and written as a shard."""

    def __init__(
        self,
        make_embedder: Callable[[], Embedder],
        out: str,
        batch_size: int,
        cache: CacheArg,
        threads: int,
    ) -> None:
        import torch

        from protoshot.embedders import embed

        # Ray gives an actor one intra-op thread per whole CPU it asked for (at least one); a
        # fractional share of several cores would leave the rest idle
        torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
        self.embedder, self.out, self.batch_size, self.cache, self._embed = (
            make_embedder(), Path(out), batch_size, cache, embed,
        )  # fmt: skip

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from protoshot.data import EmbeddingTable

        items = [str(x) if isinstance(x, np.str_) else x for x in batch["item"].tolist()]
        labels = batch["label"].tolist()
        ids = batch["id"].tolist() if "id" in batch else source_ids(items, labels)
        vectors = self._embed(
            items, self.embedder, cache=self.cache, batch_size=self.batch_size, progress=False
        )
        table = EmbeddingTable.from_arrays(
            vectors, labels, ids=ids,
            model=self.embedder.spec, fingerprint=self.embedder.fingerprint,
        )  # fmt: skip
        table.save(self.out / f"part-{secrets.token_hex(8)}.parquet")
        return {"id": np.asarray(ids)}


def embed_dataset(
    ds: Any,
    embedder: str | Callable[[], Embedder],
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    batch_size: int = 32,
    cache: CacheArg = True,
) -> int:
    """Embed the rows of the Ray dataset ``ds`` (columns ``item`` and ``label``, and ``id``
    if you have them, else :func:`row_id`) into Parquet shards in ``out``; returns the rows
    embedded.

    ``embedder``: a spec (``"minilm"``) or a function that builds one (called once per actor).
    ``cache``: each actor's embedding cache (a folder on its node; ``True``: the user's).
    An actor that dies is restarted by Ray Data and its batch run again.

    Raises
    ------
    RuntimeError
        When the actors cannot do the work (the model does not load, an extra is missing):
        the worker's own reason, in one line.
    """
    from protoshot.pipeline import embedder_for

    ray = _ray()
    make = (lambda: embedder_for(embedder)) if isinstance(embedder, str) else embedder
    Path(out).mkdir(parents=True, exist_ok=True)
    resources = actor_resources(workers)
    done = ds.map_batches(
        _EmbedAndWrite,
        fn_constructor_args=(make, str(out), batch_size, cache, _threads_each(workers)),
        batch_size=SHARD_ROWS,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),  # Ray Data restarts a dead actor
        **resources,
    )
    try:
        return int(done.count())
    except ray.exceptions.RayError as err:  # the worker's reason is its traceback's last line
        reason = next((line for line in reversed(str(err).splitlines()) if line.strip()), "")
        raise RuntimeError(f"a Ray worker failed: {reason.strip()}") from None


def _threads_each(workers: int) -> int:
    """Compute threads per actor: the cluster's CPUs shared among the actors."""
    return max(1, int(_ray().cluster_resources().get("CPU", 1) // workers))


def done_ids(out: str | os.PathLike[str], spec: str | None = None) -> set[str]:
    """The row ids already written to ``out``'s shards (read from their ``id`` column only).

    Raises
    ------
    ValueError
        If the shards were embedded by another model than ``spec``: resuming would mix them.
    """
    import json

    import pyarrow.parquet as pq

    found: set[str] = set()
    for shard in sorted(Path(out).glob("part-*.parquet")):
        if spec is not None:
            meta = json.loads((pq.read_schema(shard).metadata or {}).get(b"protoshot", b"{}"))
            if meta.get("model") not in (None, "", spec):
                raise ValueError(
                    f"{out} holds embeddings by {meta['model']!r}, not {spec!r}: write to "
                    "another folder"
                )
        found.update(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    return found


def embed_source(
    items: Sequence[Any],
    labels: Sequence[Any] | np.ndarray,
    embedder: str | Callable[[], Embedder],
    out: str | os.PathLike[str],
    *,
    address: str | None = None,
    workers: int = 1,
    batch_size: int = 32,
    cache: CacheArg = True,
) -> tuple[int, int]:
    """Embed ``items`` (texts or image paths) with their labels into ``out`` on Ray, skipping
    the rows already there; returns (rows embedded now, rows already done)."""
    ray = _ray()
    connect(address)
    ids = source_ids(items, labels)
    skip = done_ids(out, embedder if isinstance(embedder, str) else None)
    todo = [i for i, key in enumerate(ids) if key not in skip]
    if not todo:
        return 0, len(items)
    rows = [{"item": str(items[i]), "label": labels[i], "id": ids[i]} for i in todo]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // SHARD_ROWS))
    embedded = embed_dataset(ds, embedder, out, workers=workers, batch_size=batch_size, cache=cache)
    return embedded, len(items) - len(todo)
