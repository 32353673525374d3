"""Fetch the known benchmarks from their public sources, checked against fixed digests.

Files are pinned to a commit wherever the source allows it. The SHA-256 digests of BANKING77
and SNIPS were computed from copies that are byte-identical to those commits. The Omniglot zips
(brendenlake/omniglot, ``python/images_*.zip``) are checked by the MD5 digests torchvision
publishes for the same files; they are unpacked to the flat layout protoshot reads,
``images_background/<Alphabet>__characterNN/<id>_<drawer>.png``.

Every file is written under a temporary name and renamed only after its digest matched, so an
interrupted or failed download leaves nothing that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

_BANKING77 = (
    "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/"
    "57ec275d8078af65b7731c2a98be812d844a6d6b/banking_data/"
)
_SNIPS = (
    "https://raw.githubusercontent.com/sonos/nlu-benchmark/"
    "b86ac7f1577868c42158d0dec77db50956046696/2017-06-custom-intent-engines/"
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


def _snips_file(intent: str, kind: str) -> str:
    name = f"train_{intent}_full.json" if kind == "train" else f"validate_{intent}.json"
    return f"{intent}/{name}"


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
            "2017-06-custom-intent-engines/" + _snips_file(intent, kind),
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


def download(name: str, folder: str | os.PathLike[str]) -> Path:
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
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            fetched = _fetch(remote, Path(tmp) / "download")
            if remote.url.endswith(".zip"):
                _unpack_classes(fetched, Path(tmp) / "unpacked")
                os.replace(Path(tmp) / "unpacked", target)
            else:
                os.replace(fetched, target)
    return root


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
