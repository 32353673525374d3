"""Known benchmarks by name: where they are read from, how, and how they are fetched.

``banking77`` (splits ``train``, ``test``), ``snips`` (``train``, ``validation``) and
``omniglot`` (``background``, ``evaluation``) are read from ``<data dir>/<name>``, the data dir
being (:func:`data_dir`):

1. the ``root`` argument (``--data`` on the command line, where a command has it), else
2. ``$PROTOSHOT_DATA_DIR``, else
3. ``<cache dir>/data`` (see :func:`protoshot.cache.default_cache_dir`).

The library never guesses a development data folder: a copy kept elsewhere is found only when
``root`` or ``PROTOSHOT_DATA_DIR`` names it.

With ``download=True`` (``--download``) a missing benchmark is fetched from its public source
(:data:`SOURCES`) and checked against a fixed digest before anything is kept. Files are pinned
to a commit wherever the source allows it. The SHA-256 digests of BANKING77 and SNIPS were
computed from copies that are byte-identical to those commits. The Omniglot zips
(brendenlake/omniglot, ``python/images_*.zip``) are checked by the MD5 digests torchvision
publishes for the same files; they are unpacked to the flat layout protoshot reads,
``images_background/<Alphabet>__characterNN/<id>_<drawer>.png``.

A downloaded file is written under a temporary name and renamed, flushed to disk, only after
its digest matched (:func:`protoshot.store.atomic_path`); an unpacked folder is built under a
hidden temporary name beside its target and renamed in one step once complete. An interrupted
or failed download therefore never leaves anything that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protoshot.data.readers import _read_text, read_image_folder, read_table
from protoshot.data.samples import Samples, _concat, _samples
from protoshot.store import atomic_path

__all__ = [
    "BENCHMARKS",
    "SNIPS_INTENTS",
    "SOURCES",
    "Remote",
    "data_dir",
    "download_benchmark",
    "load_benchmark",
]


# --------------------------------------------------------------------------------------------
# Readers of the known benchmarks' layouts
# --------------------------------------------------------------------------------------------
def _read_banking77(folder: Path, split: str) -> Samples:
    return read_table(
        folder / "banking_data" / f"{split}.csv", text_column="text", label_column="category"
    )


_SNIPS_DIR = "2017-06-custom-intent-engines"
SNIPS_INTENTS = (
    "AddToPlaylist",
    "BookRestaurant",
    "GetWeather",
    "PlayMusic",
    "RateBook",
    "SearchCreativeWork",
    "SearchScreeningEvent",
)


def _snips_file(intent: str, kind: str) -> str:
    """``<intent>/<file>`` of one SNIPS intent; ``kind`` is ``"train"`` or ``"validate"``."""
    name = f"train_{intent}_full.json" if kind == "train" else f"validate_{intent}.json"
    return f"{intent}/{name}"


def _read_snips(folder: Path, split: str) -> Samples:
    items, labels, ids = [], [], []
    for intent in SNIPS_INTENTS:
        path = folder / _SNIPS_DIR / _snips_file(intent, split)
        try:
            records = json.loads(_read_text(path))[intent]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a SNIPS intent file ({err})") from None
        for i, record in enumerate(records):
            items.append("".join(chunk["text"] for chunk in record["data"]))
            labels.append(intent)
            ids.append(f"{intent}/{i}")
    return _samples(items, labels, ids, "text")


def _read_omniglot(folder: Path, split: str) -> Samples:
    return read_image_folder(folder / f"images_{split}")


@dataclass(frozen=True)
class _Benchmark:
    splits: dict[str, str]  # split -> path (relative to the benchmark folder) that must exist
    read: Callable[[Path, str], Samples]


BENCHMARKS: dict[str, _Benchmark] = {
    "banking77": _Benchmark(
        {"train": "banking_data/train.csv", "test": "banking_data/test.csv"}, _read_banking77
    ),
    "snips": _Benchmark(
        {
            "train": f"{_SNIPS_DIR}/{_snips_file('PlayMusic', 'train')}",
            "validation": f"{_SNIPS_DIR}/{_snips_file('PlayMusic', 'validate')}",
        },
        _read_snips,
    ),
    "omniglot": _Benchmark(
        {"background": "images_background", "evaluation": "images_evaluation"}, _read_omniglot
    ),
}


# --------------------------------------------------------------------------------------------
# Where benchmarks are, and loading them
# --------------------------------------------------------------------------------------------
def data_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where benchmarks are read from and downloaded to.

    ``root`` if given, else ``$PROTOSHOT_DATA_DIR`` if set, else ``<cache dir>/data``. No
    other folder is ever guessed.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("PROTOSHOT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from protoshot.cache import default_cache_dir

    return default_cache_dir() / "data"


def load_benchmark(
    name: str,
    split: str | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    folder: str | os.PathLike[str] | None = None,
) -> Samples:
    """Load a known benchmark.

    Parameters
    ----------
    name : {"banking77", "snips", "omniglot"}
        The benchmark.
    split : str, optional
        banking77: "train" / "test"; snips: "train" / "validation"; omniglot: "background" /
        "evaluation". Default: every split. Ids start with the split (``"test/17"``).
    root : path, optional
        The data dir holding ``<name>/`` (see :func:`data_dir`).
    download : bool
        Fetch a missing benchmark from its public source (checked against fixed digests).
    folder : path, optional
        The benchmark's own folder, overriding ``root``.

    Raises
    ------
    ValueError
        If the benchmark or split is unknown, or the benchmark is missing and ``download`` is
        false (the message says how to point at the data or fetch it).
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    bench = BENCHMARKS[name]
    if split is not None and split not in bench.splits:
        raise ValueError(f"{name} has no split {split!r}; splits: {list(bench.splits)}")
    where = Path(folder) if folder is not None else data_dir(root) / name
    splits = [split] if split is not None else list(bench.splits)
    missing = [s for s in splits if not (where / bench.splits[s]).exists()]
    if missing and download:
        download_benchmark(name, where)
    elif missing:
        raise ValueError(
            f"{name} ({', '.join(missing)}) not found in {where}: point PROTOSHOT_DATA_DIR (or "
            f"protoshot demo's --data) at the folder that holds {name}/, or fetch it with --download"
        )
    return _concat({s: bench.read(where, s) for s in splits})


def _benchmark_in(folder: Path) -> str | None:
    """The known benchmark whose layout ``folder`` has, if any."""
    for name, bench in BENCHMARKS.items():
        if any((folder / marker).exists() for marker in bench.splits.values()):
            return name
    return None


# --------------------------------------------------------------------------------------------
# Downloads, checked against fixed digests
# --------------------------------------------------------------------------------------------
_BANKING77 = (
    "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/"
    "57ec275d8078af65b7731c2a98be812d844a6d6b/banking_data/"
)
_SNIPS = (
    "https://raw.githubusercontent.com/sonos/nlu-benchmark/"
    f"b86ac7f1577868c42158d0dec77db50956046696/{_SNIPS_DIR}/"
)
_OMNIGLOT = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"


@dataclass(frozen=True)
class Remote:
    """One file of a benchmark: where it comes from, where it goes, what it must hash to.

    ``path`` is relative to the benchmark's folder. ``algorithm`` is ``"sha256"`` or ``"md5"``.
    A ``.zip`` is unpacked into the folder ``path`` names, one sub-folder per class.
    """

    url: str
    path: str
    digest: str
    algorithm: str = "sha256"


_SNIPS_SHA256 = {
    ("AddToPlaylist", "train"): "fee1b4645352e70ed8a40f1f87c3b53fc3bf75f8ebc82252a22b82c107e75b01",
    (
        "AddToPlaylist",
        "validate",
    ): "14cc9ee49ae477b1452632a6e835498cf4c32da397b16967c82abb3e50403e83",
    ("BookRestaurant", "train"): "7677e82cd6e9a8191f0a4502568c786278c984900b4796d3628e46f1abf73ef4",
    (
        "BookRestaurant",
        "validate",
    ): "4f7258ccc768b777b2eb8916532db9aa50dbd058ddf1ffb0dc59218963e7442a",
    ("GetWeather", "train"): "86f414b2ad8a993134d85d16e25e5d337beae47cef993c0af2a5f440405c60f6",
    ("GetWeather", "validate"): "60c095e193655d6ca92be220fed3926ca25e18cd70c85664145efe25d80993af",
    ("PlayMusic", "train"): "901ddbe9781d1fdb8196e789c543f80df3d29ca6e237da64947905adcc0312e4",
    ("PlayMusic", "validate"): "922212775e26259d5bffeaf79b6048d070ca017d229df00b2cc9800f71c75d20",
    ("RateBook", "train"): "bb43e4b74134300d5766f6b420d0357a63402987a225f6dc92c806c9c040ce04",
    ("RateBook", "validate"): "c1f8b4114da0bb5e8afd78a8062766e18b2eabb0e717539598db01b09d04619b",
    ("SearchCreativeWork", "train"): (
        "87b3432de48c71c205aa5238b41d9e3f2d70bdfcd0bea2427544fb9e4bd5e5bb"
    ),
    ("SearchCreativeWork", "validate"): (
        "8a5e830eddb185d3e4a9d27ded140a145d04766bdce0e58834676ede32d13e77"
    ),
    ("SearchScreeningEvent", "train"): (
        "5447e9440c02e2fb08c3ae16b9f58a4d1332b4bc77fd34691402b02aa4399765"
    ),
    ("SearchScreeningEvent", "validate"): (
        "81e1445713e03c7c3e615353c5f3fee05f369fe9834100b9b9735900a96b9498"
    ),
}

#: ``{benchmark: files}``: every file a benchmark's download fetches.
SOURCES: dict[str, tuple[Remote, ...]] = {
    "banking77": (
        Remote(
            _BANKING77 + "train.csv",
            "banking_data/train.csv",
            "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
        ),
        Remote(
            _BANKING77 + "test.csv",
            "banking_data/test.csv",
            "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
        ),
        Remote(
            _BANKING77 + "categories.json",
            "banking_data/categories.json",
            "53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63",
        ),
    ),
    "snips": tuple(
        Remote(
            _SNIPS + _snips_file(intent, kind),
            f"{_SNIPS_DIR}/{_snips_file(intent, kind)}",
            digest,
        )
        for (intent, kind), digest in _SNIPS_SHA256.items()
    ),
    "omniglot": (
        Remote(
            _OMNIGLOT + "images_background.zip",
            "images_background",
            "68d2efa1b9178cc56df9314c21c6e718",
            "md5",
        ),
        Remote(
            _OMNIGLOT + "images_evaluation.zip",
            "images_evaluation",
            "6b91aef0f799c5bb55b94e3f2daec811",
            "md5",
        ),
    ),
}


def download_benchmark(name: str, folder: str | os.PathLike[str]) -> Path:
    """Download benchmark ``name`` into ``folder`` (files already there are kept).

    Parameters
    ----------
    name : {"banking77", "snips", "omniglot"}
        The benchmark.
    folder : path
        Its folder, e.g. ``<data dir>/banking77``.

    Returns
    -------
    Path
        ``folder``.

    Raises
    ------
    ValueError
        If a file's digest does not match (nothing is left behind).
    OSError
        If a source cannot be reached.
    """
    if name not in SOURCES:
        raise ValueError(f"no download source for {name!r}; known: {sorted(SOURCES)}")
    root = Path(folder)
    for remote in SOURCES[name]:
        target = root / remote.path
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if remote.url.endswith(".zip"):
            _download_folder(remote, target)
        else:
            with atomic_path(target) as tmp:
                _fetch(remote, tmp)
    return root


def _download_folder(remote: Remote, target: Path) -> None:
    """Fetch and unpack a zip into a hidden folder beside ``target``, then rename it there.

    Only a complete folder ever has ``target``'s name: the files and the folder are flushed to
    disk before the rename, the parent folder after it.
    """
    with tempfile.TemporaryDirectory(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    ) as tmp:
        built = Path(tmp) / "unpacked"
        _unpack_classes(_fetch(remote, Path(tmp) / "download.zip"), built)
        _sync()  # the unpacked files' contents and names reach the disk before the rename
        try:
            os.replace(built, target)
        except OSError:
            if not target.is_dir():  # else another process has just put the same folder there
                raise
        _sync()


def _sync() -> None:
    """Flush written files and folder entries to disk (POSIX ``sync``; a no-op elsewhere).

    One ``sync`` instead of an ``fsync`` per file: Omniglot unpacks to some 32,000 files, and
    an ``fsync`` each takes over a minute on an ordinary disk.
    """
    if hasattr(os, "sync"):
        os.sync()


def _fetch(remote: Remote, dest: Path) -> Path:
    """Stream ``remote.url`` to ``dest`` while hashing; raise if the digest differs."""
    digest = hashlib.new(remote.algorithm)
    with urllib.request.urlopen(remote.url, timeout=60) as response, open(dest, "wb") as out:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != remote.digest:
        raise ValueError(
            f"{remote.url} has {remote.algorithm} {digest.hexdigest()}, expected {remote.digest}: "
            "the download is corrupt or the source changed; nothing was kept"
        )
    return dest


def _unpack_classes(archive: Path, dest: Path) -> None:
    """Unpack ``<top>/<Alphabet>/<characterNN>/*.png`` as ``<Alphabet>__<characterNN>/*.png``."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = Path(info.filename).parts
            unsafe = any(part in ("..", "/", "\\") for part in parts)
            if info.is_dir() or unsafe or len(parts) != 4 or parts[-1].startswith("."):
                continue
            _, alphabet, character, filename = parts
            target = dest / f"{alphabet}__{character}" / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
