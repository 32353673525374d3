"""A model folder is checked like a file format: a hand-edited or corrupt folder is refused
with one line naming the field, never a traceback, a NaN or a silently different model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import protoshot.cli._commands  # noqa: F401  (registers the commands)
from protoshot import PrototypeClassifier, load_estimator
from protoshot.cli import app

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    model = PrototypeClassifier(normalization="cl2n").fit(rng.normal(size=(6, 4)), list("aabbcc"))
    return model.save(tmp_path / "m")


def edit_config(folder: Path, change: Edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def setting(key: str, value: Any) -> Edit:
    return lambda c: c.__setitem__(key, value)


def param(key: str, value: Any) -> Edit:
    return lambda c: c["params"].__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (param("temperature", -1), "temperature must be > 0"),  # once: inverted probabilities
        (param("temperature", 0), "temperature must be > 0"),  # once: NaN
        (param("normalization", "zscore"), "unknown normalization 'zscore'"),
        (param("metric", 3), "metric"),
        (param("colour", "red"), "params are not valid"),
        (setting("classes", ["a", "a", "c"]), "classes must be distinct names"),
        (setting("classes", ["a", "b\x00", "c"]), "control character"),
        (setting("classes", []), "classes must be a non-empty list"),
        (setting("classes", ["a", 1, "c"]), "classes must be a non-empty list"),
        (setting("n_features_in", 5), "has shape .* for 3 classes of 5 features"),
        (setting("n_features_in", "4"), "n_features_in must be a int"),
        (setting("arrays_file", "/etc/passwd"), "arrays_file must be a file of the folder"),
        (setting("arrays_file", "../other/prototypes-0123456789abcdef.safetensors"), "arrays_file"),
        (setting("arrays_sha256", "xyz"), "arrays_sha256 must be 64 hexadecimal digits"),
        (setting("method", "forest"), "unknown method 'forest'"),
        (setting("fixed_center", "yes"), "fixed_center must be a bool"),
        (setting("metadata", []), "metadata must be a dict"),
    ],
)
def test_a_hand_edited_config_is_refused_naming_the_field(
    folder: Path, change: Edit, message: str
) -> None:
    edit_config(folder, change)
    with pytest.raises(ValueError, match=message):
        load_estimator(folder)
    result = CliRunner().invoke(app, ["info", str(folder)])
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_a_long_name_is_kept_whole_whatever_dtype_the_config_claims(folder: Path) -> None:
    edit_config(folder, setting("classes_dtype", "<U1"))  # once truncated every name
    edit_config(folder, setting("classes", ["alpha", "beta", "gamma"]))
    assert load_estimator(folder).classes_.tolist() == ["alpha", "beta", "gamma"]


def rewrite_arrays(folder: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Change the arrays and write a matching checksum: only the content check can notice."""
    from safetensors.numpy import load, save

    config = json.loads((folder / "config.json").read_text())
    arrays = load((folder / config["arrays_file"]).read_bytes())
    change(arrays)
    data = save(arrays)
    (folder / config["arrays_file"]).write_bytes(data)
    edit_config(folder, setting("arrays_sha256", hashlib.sha256(data).hexdigest()))
    edit_config(folder, setting("journal_file", None))  # its journal names the old arrays


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.__setitem__("counts", np.zeros(3, np.int64)), "neither shots nor a name"),
        (lambda a: a.__setitem__("counts", np.array([-1, 2, 2])), "negative values"),
        (lambda a: a["sums"].__setitem__((0, 0), np.nan), "NaN or infinite"),
        (lambda a: a.__setitem__("sums", np.zeros((2, 4))), "the array 'sums' has shape"),
        (lambda a: a.pop("sums"), "the array 'sums' is missing"),
        (lambda a: a.__setitem__("support_codes", np.array([0, 0, 1, 1, 2, 7])), "support_codes"),
        (lambda a: a.__setitem__("center", np.zeros(3)), "the array 'center' has shape"),
        (lambda a: a.__setitem__("updated", -np.ones(3)), "'updated' holds negative values"),
        (lambda a: a.__setitem__("updated", np.zeros(4)), "the array 'updated' has shape"),
        (lambda a: a.__setitem__("updated", np.full(3, 1e12)), "past the year 9999"),
    ],
)
def test_corrupt_arrays_with_a_recomputed_checksum_are_refused(
    folder: Path, change, message
) -> None:
    rewrite_arrays(folder, change)
    with pytest.raises(ValueError, match=message):
        load_estimator(folder)


def test_an_unreadable_arrays_file_is_one_line(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    data = b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage"
    (folder / config["arrays_file"]).write_bytes(data)
    edit_config(folder, setting("arrays_sha256", hashlib.sha256(data).hexdigest()))
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        load_estimator(folder)


def test_a_folder_from_before_update_times_loads_with_none_recorded(folder: Path) -> None:
    rewrite_arrays(folder, lambda a: a.pop("updated"))
    assert load_estimator(folder).updated_.tolist() == [0.0, 0.0, 0.0]
