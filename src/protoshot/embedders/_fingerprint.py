"""Stable fingerprints: a SHA-256 over a canonical JSON description of the model."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# (path, size, mtime_ns) -> sha256, so re-creating an embedder does not re-read its weights
_FILE_HASHES: dict[tuple[str, int, int], str] = {}
_SKIPPED_SUFFIXES = (".md", ".lock")


def fingerprint_of(config: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of ``config`` as canonical JSON (sorted keys)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, remembered for the file's size and mtime."""
    stat = os.stat(path)
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
    digest = _FILE_HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = _FILE_HASHES[key] = h.hexdigest()
    return digest


def hash_folder(folder: str | os.PathLike[str]) -> str:
    """SHA-256 over the relative paths and contents of a model folder.

    Hidden files, ``*.md`` and ``*.lock`` are left out, so a README edit keeps the fingerprint.
    """
    root = Path(folder)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.endswith(_SKIPPED_SUFFIXES)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.relative_to(root).as_posix()}\0{hash_file(path)}\n".encode())
    return h.hexdigest()


def hash_state_dict(module: torch.nn.Module) -> str:
    """SHA-256 over a module's parameter and buffer names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        data = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}\0{data.dtype}\0{tuple(data.shape)}\0".encode())
        h.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def weights_identity(
    name_or_path: str, revision: str | None, module: torch.nn.Module
) -> dict[str, str]:
    """How a loaded model's weights are identified.

    A local folder by a hash of its files; a hub model by the commit it was loaded from
    (found in the local hub cache); anything else by a hash of ``module``'s state dict.
    """
    if Path(name_or_path).is_dir():
        return {"files_sha256": hash_folder(name_or_path)}
    commit = _hub_commit(name_or_path, revision)
    if commit is not None:
        return {"repo": name_or_path, "commit": commit}
    return {"state_dict_sha256": hash_state_dict(module)}


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id
        return None
    # <cache>/models--org--name/snapshots/<commit>/config.json
    return Path(found).parent.name if isinstance(found, str) else None
