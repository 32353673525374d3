"""Adapters: a small head trained on frozen, cached embeddings of base classes, episodically.

Frozen features do not know every domain (ImageNet features do not know handwritten strokes).
An adapter maps a base embedder's vectors through a small head (``linear``, ``residual``
``x + Ax``, or a 2-layer ``mlp``) trained with the prototypical loss on N-way K-shot episodes
of a labelled base set: the classes it will be used on are never in it. Each step costs a
matrix product on cached vectors, so training takes seconds to minutes on a CPU.

The number of steps is chosen on validation classes that are not trained on (held-out base
classes by default, or another data set): the head kept is the one with the best validation
accuracy, and training stops once it has not improved for ``patience`` evaluations. For text,
validate on another data set: an adapter trained and validated on one intent set's classes has
been measured here to *lower* accuracy on other intent sets.

An adapter is saved as ``adapter.safetensors`` + ``adapter.json`` (base embedder's spec and
fingerprint, settings, the classes it was trained on, the validation history) and used as an
embedder, ``adapter:<folder>`` (see :mod:`protoshot.embedders.adapter`), with a fingerprint of
its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoshot._validation import check_choice
from protoshot.episodes import EpisodeSampler
from protoshot.labels import as_label_array

KINDS = ("linear", "residual", "mlp")
FORMAT_VERSION = 1
WEIGHTS, CONFIG = "adapter.safetensors", "adapter.json"


@dataclass(frozen=True)
class AdapterSettings:
    """How an adapter is trained (the defaults are the Omniglot scout's).

    ``dim`` is the output size of ``linear`` and ``mlp`` heads (``None``: the input's);
    a ``residual`` head keeps the input's. Each step averages the loss of
    ``episodes_per_step`` episodes of ``n_way`` classes, ``n_shot`` shots and ``n_query``
    queries. Validation: every ``eval_every`` steps, ``val_episodes`` 5-way episodes of
    ``val_shot`` shots on the validation classes.
    """

    kind: str = "linear"
    dim: int | None = 512
    n_way: int = 20
    n_shot: int = 1
    n_query: int = 5
    episodes_per_step: int = 4
    steps: int = 1500
    learning_rate: float = 1e-3
    eval_every: int = 100
    patience: int = 5
    val_episodes: int = 500
    val_shot: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("adapter kind", self.kind, KINDS)
        for name in ("n_way", "n_shot", "n_query", "episodes_per_step", "steps", "eval_every",
                     "patience", "val_episodes", "val_shot"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclass
class Adapter:
    """A trained head over a base embedder's vectors; :meth:`transform` applies it."""

    head: torch.nn.Module
    center: np.ndarray  # the base set's mean: inputs are centred and L2-normalised first
    base: dict[str, Any]  # the base embedder's spec, fingerprint, dim and modality
    classes: list[Any]  # every class it was trained or validated on
    settings: AdapterSettings
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def frozen_accuracy(self) -> float:
        """Validation accuracy of the frozen vectors (the history's step 0)."""
        return float(self.history[0]["accuracy"]) if self.history else float("nan")

    @property
    def accuracy(self) -> float:
        """Validation accuracy of the head kept (the best of the trained ones)."""
        trained = [h["accuracy"] for h in self.history[1:]]
        return float(max(trained)) if trained else float("nan")

    @property
    def in_dim(self) -> int:
        return int(self.center.shape[0])

    @property
    def dim(self) -> int:
        return int(self.transform(np.zeros((1, self.in_dim), np.float32)).shape[1])

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the base embedder's fingerprint, the kind and every weight."""
        h = hashlib.sha256(f"{self.base['fingerprint']}\0{self.settings.kind}\0".encode())
        h.update(json.dumps(sorted(map(str, self.classes))).encode())  # what it may not be used on
        for name, tensor in sorted(self._arrays().items()):
            h.update(f"{name}\0{tensor.dtype}\0{tensor.shape}\0".encode())
            h.update(np.ascontiguousarray(tensor).tobytes())
        return h.hexdigest()

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Adapted vectors of base vectors ``x`` [n, in_dim]: float32 [n, dim]."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(
                f"the adapter takes vectors of {self.in_dim} features, got shape {list(x.shape)}"
            )
        with torch.inference_mode():
            out = self.head(_normalized(torch.from_numpy(x), torch.from_numpy(self.center)))
        return out.numpy().astype(np.float32, copy=False)

    def check_disjoint(self, labels: Sequence[Any] | np.ndarray, what: str) -> None:
        """A ValueError if ``labels`` share classes with the adapter's base set: a result on
        classes it was trained on says nothing about new ones (a silent leak)."""
        shared = sorted(
            set(map(str, np.unique(as_label_array(labels)).tolist())) & set(map(str, self.classes))
        )
        if shared:
            raise ValueError(
                f"{what} shares {len(shared)} classes with the adapter's base set (e.g. "
                f"{', '.join(shared[:3])}): evaluate it on classes it was not trained on"
            )

    # ---------------------------------------------------------------------------- files
    def _arrays(self) -> dict[str, np.ndarray]:
        weights = {k: v.detach().cpu().numpy() for k, v in self.head.state_dict().items()}
        return {**{f"head.{k}": v for k, v in weights.items()}, "center": self.center}

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``adapter.safetensors`` and ``adapter.json`` (which names the weights' SHA-256,
        so a folder whose files do not belong together is refused on load)."""
        from safetensors.numpy import save

        from protoshot.store import write_atomically

        folder = Path(folder)
        if (folder / CONFIG).exists() and not overwrite:
            raise FileExistsError(f"{folder} already holds an adapter: pass --force to replace it")
        folder.mkdir(parents=True, exist_ok=True)
        data = save({k: np.ascontiguousarray(v) for k, v in self._arrays().items()})
        config = {
            "format_version": FORMAT_VERSION,
            "kind": self.settings.kind,
            "in_dim": self.in_dim,
            "base": self.base,
            "fingerprint": self.fingerprint,
            "weights_sha256": hashlib.sha256(data).hexdigest(),
            "settings": asdict(self.settings),
            "classes": [c if isinstance(c, (int, str)) else str(c) for c in self.classes],
            "history": self.history,
        }
        write_atomically(folder / WEIGHTS, data)
        write_atomically(folder / CONFIG, json.dumps(config, indent=1).encode())
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Adapter:
        """Read an adapter folder (safetensors + JSON; nothing is unpickled), checked."""
        from safetensors.numpy import load

        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
            data = (folder / WEIGHTS).read_bytes()
        except (OSError, ValueError) as err:
            raise ValueError(f"{folder} is not a readable adapter folder ({err})") from None
        if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}/{CONFIG} is not an adapter of format {FORMAT_VERSION}")
        if hashlib.sha256(data).hexdigest() != config.get("weights_sha256"):
            raise ValueError(f"{folder}/{WEIGHTS} is not the file {CONFIG} was written with")
        try:
            settings = AdapterSettings(**config["settings"])
            arrays = load(data)
            in_dim = int(config["in_dim"])
            head = make_head(settings, in_dim)
            weights = {k.removeprefix("head."): v for k, v in arrays.items() if k != "center"}
            head.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            adapter = cls(
                head.eval(), arrays["center"], dict(config["base"]), list(config["classes"]),
                settings, list(config.get("history", [])),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{folder} holds a damaged adapter ({err})") from None
        try:
            fingerprint = adapter.fingerprint
        except (KeyError, TypeError) as err:
            raise ValueError(f"{folder} holds a damaged adapter ({err!r})") from None
        if not isinstance(config["classes"], list) or fingerprint != config.get("fingerprint"):
            raise ValueError(
                f"{folder}: the weights and classes do not give the recorded fingerprint"
            )
        return adapter


def make_head(settings: AdapterSettings, in_dim: int) -> torch.nn.Module:
    """An untrained head of ``settings.kind`` for ``in_dim`` inputs (seeded by the caller)."""
    out = settings.dim or in_dim
    if settings.kind == "linear":
        return torch.nn.Linear(in_dim, out, bias=False)
    if settings.kind == "mlp":
        return torch.nn.Sequential(
            torch.nn.Linear(in_dim, out), torch.nn.ReLU(), torch.nn.Linear(out, out)
        )
    return _Residual(in_dim)


class _Residual(torch.nn.Module):
    """``x + A x`` with ``A`` starting at zero: training starts from the frozen features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.delta = torch.nn.Linear(dim, dim, bias=False)
        torch.nn.init.zeros_(self.delta.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.delta(x)


def _normalized(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x - center, dim=-1)


def prototypical_loss(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the queries [B, N, Q, D] over negative squared distances to the means of
    the supports [B, N, K, D] (Snell et al., 2017), averaged over the episodes."""
    b, n, q, _ = query.shape
    prototypes = support.mean(2)  # [B, N, D]
    logits = -torch.cdist(query.reshape(b, n * q, -1), prototypes).pow(2)  # [B, NQ, N]
    target = torch.arange(n, device=query.device).repeat_interleave(q).repeat(b)
    return torch.nn.functional.cross_entropy(logits.reshape(b * n * q, n), target)


def split_classes(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint class sets: ``fraction`` of the classes (at least 5) held out for validation."""
    classes = np.unique(labels)
    held = max(5, round(fraction * len(classes)))
    if len(classes) - held < 5:
        raise ValueError(
            f"the base set has {len(classes)} classes: too few to hold {held} out for validation "
            "and train on the rest; give --validate-on another data set"
        )
    order = np.random.default_rng(seed).permutation(len(classes))
    return np.sort(classes[order[held:]]), np.sort(classes[order[:held]])


def train_adapter(
    x: np.ndarray,
    y: Sequence[Any] | np.ndarray,
    base: dict[str, Any],
    *,
    settings: AdapterSettings | None = None,
    validation: tuple[np.ndarray, Sequence[Any] | np.ndarray] | None = None,
    val_fraction: float = 0.2,
    progress: Callable[[int, int, float | None], None] | None = None,
) -> Adapter:
    """Train an adapter on base vectors ``x`` [n, D] with labels ``y``.

    Parameters
    ----------
    base : dict
        The base embedder's ``spec``, ``fingerprint``, ``dim`` and ``modality``.
    validation : (vectors, labels), optional
        Another data set's vectors (same base embedder) to choose the steps on; by default
        ``val_fraction`` of the base classes are held out of training for it.
    progress : callable, optional
        ``progress(step, steps, validation_accuracy_or_None)`` after each step.
    """
    settings = settings or AdapterSettings()
    x = np.asarray(x, dtype=np.float32)
    labels = as_label_array(y)
    if x.ndim != 2 or len(x) != len(labels) or not np.isfinite(x).all():
        raise ValueError("the base set needs finite vectors [n, D] and one label per vector")
    if validation is None:
        train_classes, val_classes = split_classes(labels, val_fraction, settings.seed)
        x_val, y_val = x[np.isin(labels, val_classes)], labels[np.isin(labels, val_classes)]
        keep = np.isin(labels, train_classes)
        x_train, y_train = x[keep], labels[keep]
    else:
        x_train, y_train = x, labels
        x_val, y_val = np.asarray(validation[0], np.float32), as_label_array(validation[1])
        shared = set(map(str, np.unique(labels).tolist())) & set(
            map(str, np.unique(y_val).tolist())
        )
        if shared:
            raise ValueError(
                f"the validation set shares {len(shared)} classes with the base set (e.g. "
                f"{', '.join(sorted(shared)[:3])}): validation must be on other classes"
            )
    torch.manual_seed(settings.seed)
    center = x_train.mean(0).astype(np.float32)
    inputs = _normalized(torch.from_numpy(x_train), torch.from_numpy(center))
    head = make_head(settings, x.shape[1])
    optimizer = torch.optim.Adam(head.parameters(), lr=settings.learning_rate)
    sampler = EpisodeSampler(
        y_train, n_way=min(settings.n_way, len(np.unique(y_train))), n_shot=settings.n_shot,
        n_query=settings.n_query, n_episodes=settings.steps * settings.episodes_per_step,
        seed=settings.seed,
    )  # fmt: skip
    validate = _validator(x_val, y_val, center, settings)
    adapter = Adapter(head, center, dict(base), _all_classes(labels, y_val), settings)
    adapter.history.append({"step": 0, "accuracy": validate(None), "seconds": 0.0})  # frozen
    best_accuracy, best_state, stale = -1.0, None, 0
    start = time.perf_counter()
    episodes = sampler.sample()
    for step in range(1, settings.steps + 1):
        block = episodes[
            (step - 1) * settings.episodes_per_step : step * settings.episodes_per_step
        ]
        head.train()
        loss = prototypical_loss(
            head(inputs[torch.from_numpy(block.support)]),
            head(inputs[torch.from_numpy(block.query)]),
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss diverged at step {step}: lower the learning rate")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy = None
        if step % settings.eval_every == 0 or step == settings.steps:
            head.eval()
            accuracy = validate(head)
            adapter.history.append(
                {"step": step, "accuracy": accuracy, "seconds": time.perf_counter() - start}
            )
            if accuracy > best_accuracy:
                best_accuracy, stale = accuracy, 0
                best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            else:
                stale += 1
        if progress is not None:
            progress(step, settings.steps, accuracy)
        if stale >= settings.patience:
            break
    if best_state is not None:  # the last step is always validated, so there is one
        head.load_state_dict(best_state)
    head.eval()
    return adapter


def _all_classes(*label_sets: np.ndarray) -> list[Any]:
    return sorted({c for labels in label_sets for c in np.unique(labels).tolist()}, key=str)


def _validator(
    x: np.ndarray, y: np.ndarray, center: np.ndarray, settings: AdapterSettings
) -> Callable[[torch.nn.Module | None], float]:
    """Mean accuracy of 5-way prototypes (CL2N, squared Euclidean) on fixed validation
    episodes, through a head (``None``: the frozen vectors)."""
    from protoshot.evaluation import evaluate_episodes

    smallest = int(np.unique(y, return_counts=True)[1].min())
    if smallest <= settings.val_shot:
        raise ValueError(
            f"a validation class has {smallest} samples: {settings.val_shot} shots and at least "
            "one query are needed"
        )
    episodes = EpisodeSampler(
        y, n_way=min(5, len(np.unique(y))), n_shot=settings.val_shot,
        n_query=min(15, smallest - settings.val_shot), n_episodes=settings.val_episodes,
        seed=settings.seed + 1,
    ).sample()  # fmt: skip
    normalized = _normalized(torch.from_numpy(x), torch.from_numpy(center))

    def accuracy(head: torch.nn.Module | None) -> float:
        with torch.inference_mode():
            vectors = normalized if head is None else head(normalized)
        grid = evaluate_episodes(vectors.numpy(), episodes, normalizations=["cl2n"])
        return float(grid.results[0].mean)

    return accuracy
