"""A folder of weights: a safetensors file and a JSON file that names its SHA-256.

Adapters and tuned encoders are saved this way: the JSON says what the weights are, and the
hash refuses a folder whose two files do not belong together (a copy cut short, one file
replaced). Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from protoshot.store.durable import write_atomically


def write_weights(
    folder: str | os.PathLike[str],
    names: tuple[str, str],
    arrays: dict[str, np.ndarray],
    config: dict[str, Any],
) -> Path:
    """Write ``arrays`` to ``names[0]`` (safetensors) and ``config`` plus ``weights_sha256``
    to ``names[1]`` (JSON) in ``folder``, each atomically, the weights first."""
    from safetensors.numpy import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    config = {**config, "weights_sha256": hashlib.sha256(data).hexdigest()}
    write_atomically(folder / names[0], data)
    write_atomically(folder / names[1], json.dumps(config, indent=1).encode())
    return folder


def read_weights(
    folder: str | os.PathLike[str], names: tuple[str, str], what: str, versions: tuple[int, ...]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The config and arrays :func:`write_weights` wrote, checked.

    Raises
    ------
    ValueError
        If a file cannot be read, the JSON is not an object of one of the format ``versions``,
        or the weights are not the file the JSON names, saying so of ``what`` ("adapter").
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    folder = Path(folder)
    try:
        config = json.loads((folder / names[1]).read_text(encoding="utf-8"))
        data = (folder / names[0]).read_bytes()
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder} is not a readable {what} folder ({err})") from None
    if not isinstance(config, dict) or config.get("format_version") not in versions:
        formats = " or ".join(map(str, versions))
        raise ValueError(f"{folder}/{names[1]} does not describe a format {formats} {what}")
    if hashlib.sha256(data).hexdigest() != config.get("weights_sha256"):
        raise ValueError(f"{folder}/{names[0]} is not the file {names[1]} was written with")
    try:
        return config, load(data)
    except SafetensorError as err:
        raise ValueError(f"{folder}/{names[0]} is damaged ({err})") from None
