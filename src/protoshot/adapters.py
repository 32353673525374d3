"""Adapters: a small head trained on frozen, cached embeddings of base classes, episodically.

Frozen features do not know every domain (ImageNet features do not know handwritten strokes).
An adapter maps a base embedder's vectors through a small head (``linear``, ``residual``
``x + Ax``, or a 2-layer ``mlp``) trained with the prototypical loss on N-way K-shot episodes
of a labelled base set: the classes it will be used on are never in it. Each step costs a
matrix product on cached vectors, so training takes seconds to minutes on a CPU.

Partial fine-tuning (``top``) is the same, one level down: the base vectors are the cached
outputs of a model's frozen lower part (:func:`protoshot.embedders.lower_part`), and the head
is the model's own pretrained top (:func:`protoshot.embedders.upper_part`: for EfficientNet-
Lite0 its last block and head convolution), fine-tuned, followed by CL2N and a linear projection.

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
import math
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

KINDS = ("linear", "residual", "mlp", "top")
#: Settings of ``top`` that differ from the other kinds': a training step runs a block on 120
#: maps and a validation runs it on every validation map, so one episode a step, fewer steps
#: and validations; a 2 x 2 grid and a cosine decay (chosen on Omniglot's held-out background
#: classes, never on the classes reported).
TOP_DEFAULTS = {
    "episodes_per_step": 1, "steps": 750, "eval_every": 250, "val_episodes": 300, "grid": 2,
    "schedule": "cosine",
}  # fmt: skip
SCHEDULES = ("constant", "cosine")
#: Format 1: the vector heads; format 2 adds ``top`` (and its settings), so a version that
#: cannot run a ``top`` adapter says so rather than calling it damaged.
FORMAT_VERSION = 1
TOP_FORMAT_VERSION = 2
TOP_SETTINGS = ("top_learning_rate", "grid", "schedule")  # not written for the vector heads
WEIGHTS, CONFIG = "adapter.safetensors", "adapter.json"


@dataclass(frozen=True)
class AdapterSettings:
    """How an adapter is trained (the defaults are the Omniglot scout's).

    ``dim`` is the output size of ``linear``, ``mlp`` and ``top`` heads (``None``: the
    input's); a ``residual`` head keeps the input's. ``top_learning_rate`` is the step size of
    the fine-tuned pretrained layers of a ``top`` head (its projection takes
    ``learning_rate``), and ``grid`` the side of the grid its maps are average-pooled on
    before the projection (1: global pooling; characters need to know where their strokes
    are). ``schedule`` ``cosine`` decays the step sizes to zero over ``steps``. Build them with
    :meth:`for_kind`, which gives each kind its own defaults. Each step averages the loss of
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
    top_learning_rate: float = 5e-4
    grid: int = 1
    schedule: str = "constant"
    eval_every: int = 100
    patience: int = 5
    val_episodes: int = 500
    val_shot: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("adapter kind", self.kind, KINDS)
        check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("n_way", "n_shot", "n_query", "episodes_per_step", "steps", "eval_every",
                     "patience", "val_episodes", "val_shot", "grid"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        for name in ("learning_rate", "top_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def for_kind(cls, kind: str, **settings: Any) -> AdapterSettings:
        """Settings of ``kind`` with its own defaults (:data:`TOP_DEFAULTS` for ``top``);
        ``settings`` given as ``None`` keep the default."""
        given = {k: v for k, v in settings.items() if v is not None}
        return cls(kind=kind, **{**(TOP_DEFAULTS if kind == "top" else {}), **given})


@dataclass
class Adapter:
    """A trained head over a base embedder's vectors; :meth:`transform` applies it."""

    head: torch.nn.Module
    center: np.ndarray | None  # the base set's mean (inputs are centred and L2-normalised
    # first); None for ``top``, whose maps go in as they are
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
        return int(self.base["dim"])

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
        return _apply(self.head, self._prepared(x)).numpy()

    def _prepared(self, x: np.ndarray) -> torch.Tensor:
        """Inputs as the head takes them: centred and L2-normalised, except for ``top``."""
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return inputs if self.center is None else _normalized(inputs, torch.from_numpy(self.center))

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
        center = {} if self.center is None else {"center": self.center}
        return {**{f"head.{k}": v for k, v in weights.items()}, **center}

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``adapter.safetensors`` and ``adapter.json`` (which names the weights' SHA-256,
        so a folder whose files do not belong together is refused on load)."""
        from protoshot.store.weights import write_weights

        folder = Path(folder)
        if (folder / CONFIG).exists() and not overwrite:
            raise FileExistsError(f"{folder} already holds an adapter: pass --force to replace it")
        settings = asdict(self.settings)
        if self.settings.kind != "top":  # readable by versions before partial fine-tuning
            settings = {k: v for k, v in settings.items() if k not in TOP_SETTINGS}
        config = {
            "format_version": TOP_FORMAT_VERSION if self.settings.kind == "top" else FORMAT_VERSION,
            "kind": self.settings.kind,
            "in_dim": self.in_dim,
            "base": self.base,
            "fingerprint": self.fingerprint,
            "settings": settings,
            "classes": [c if isinstance(c, (int, str)) else str(c) for c in self.classes],
            "history": self.history,
        }
        return write_weights(folder, (WEIGHTS, CONFIG), self._arrays(), config)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Adapter:
        """Read an adapter folder (safetensors + JSON; nothing is unpickled), checked."""
        from protoshot.store.weights import read_weights

        folder = Path(folder)
        versions = (FORMAT_VERSION, TOP_FORMAT_VERSION)
        config, arrays = read_weights(folder, (WEIGHTS, CONFIG), "adapter", versions)
        try:
            settings = AdapterSettings(**config["settings"])
            base = dict(config["base"])
            if int(config["in_dim"]) != int(base["dim"]):
                raise ValueError("in_dim is not the base embedder's dim")
            center = None if settings.kind == "top" else arrays["center"]
            head = make_head(settings, int(base["dim"]), base_spec=str(base["spec"]))
            weights = {k.removeprefix("head."): v for k, v in arrays.items() if k != "center"}
            head.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            adapter = cls(
                head.eval(), center, base, list(config["classes"]), settings,
                list(config.get("history", [])),
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


def describe(embedder: Any) -> dict[str, Any]:
    """What an adapter records of its base embedder: spec, fingerprint, dim and modality."""
    return {"spec": embedder.spec, "fingerprint": embedder.fingerprint, "dim": embedder.dim,
            "modality": embedder.modality}  # fmt: skip


def make_head(settings: AdapterSettings, in_dim: int, *, base_spec: str = "") -> torch.nn.Module:
    """An untrained head of ``settings.kind`` for ``in_dim`` inputs (seeded by the caller);
    ``top`` continues the model whose lower part ``base_spec`` is, from its pretrained weights."""
    if settings.kind == "top":
        from protoshot.embedders import upper_part

        top = upper_part(base_spec)
        return _Top(top, settings.dim or int(top.dim), settings.grid)
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


class _Top(torch.nn.Module):
    """A model's pretrained top (fine-tuned), its maps average-pooled on a ``grid`` x ``grid``
    grid, CL2N, a linear projection. The centre is a buffer, set from the base set."""

    center: torch.Tensor

    def __init__(self, top: Any, dim: int, grid: int) -> None:
        super().__init__()
        self.top: Any = top
        self.grid = grid
        features = int(top.dim) * grid * grid
        self.register_buffer("center", torch.zeros(features))
        self.proj = torch.nn.Linear(features, dim, bias=False)

    def pooled(self, lower: torch.Tensor) -> torch.Tensor:
        """The top's maps of ``lower`` [n, in_dim], pooled on the grid: [n, dim * grid**2]."""
        maps = self.top.maps(lower)
        return torch.nn.functional.adaptive_avg_pool2d(maps, self.grid).flatten(1)

    def features(self, lower: torch.Tensor) -> torch.Tensor:
        """The pooled features, centred and L2-normalised (the frozen ones before training);
        ``lower`` [..., in_dim] as the vector heads take their inputs."""
        pooled = self.pooled(lower.reshape(-1, lower.shape[-1]))
        return _normalized(pooled, self.center).reshape(*lower.shape[:-1], -1)

    def forward(self, lower: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(lower))


def _apply(
    transform: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = 256
) -> torch.Tensor:
    """``transform`` of ``x`` in inference mode, ``chunk`` rows at a time (a ``top`` head's
    activations for a whole data set would not fit in memory)."""
    with torch.inference_mode():
        parts = [transform(x[i : i + chunk]) for i in range(0, max(len(x), 1), chunk)]
        return torch.cat(parts).cpu()


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
    device: str | torch.device | None = None,
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
    device : str or torch.device, optional
        Where to train (default: the best available, a GPU when there is one); the adapter
        returned is on the CPU, where it embeds.
    """
    settings = settings or AdapterSettings()
    x = np.asarray(x, dtype=np.float32)
    labels = as_label_array(y)
    if x.ndim != 2 or len(x) != len(labels) or not np.isfinite(x).all():
        raise ValueError("the base set needs finite vectors [n, D] and one label per vector")
    if base.get("dim") is not None and int(base["dim"]) != x.shape[1]:
        raise ValueError(f"the base embedder makes {base['dim']}-d vectors, got {x.shape[1]}-d")
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
    from protoshot._device import best_device

    on = best_device(device)
    torch.manual_seed(settings.seed)
    head = make_head(settings, x.shape[1], base_spec=str(base.get("spec", ""))).to(on)
    frozen: Callable[[torch.Tensor], torch.Tensor] = torch.nn.Identity()
    if isinstance(head, _Top):
        center = None
        inputs, x_val_in = torch.from_numpy(x_train).to(on), torch.from_numpy(x_val).to(on)
        sample = inputs[:: max(1, len(inputs) // 2000)]  # the centre of the frozen features
        head.center.copy_(_apply(head.eval().pooled, sample).mean(0))
        frozen = head.top  # the model's own features (the validator centres and normalises)
        groups = [
            {"params": head.top.parameters(), "lr": settings.top_learning_rate},
            {"params": head.proj.parameters(), "lr": settings.learning_rate},
        ]
    else:
        center = x_train.mean(0).astype(np.float32)
        inputs = _normalized(torch.from_numpy(x_train), torch.from_numpy(center)).to(on)
        x_val_in = _normalized(torch.from_numpy(x_val), torch.from_numpy(center)).to(on)
        groups = [{"params": head.parameters()}]
    optimizer = torch.optim.Adam(groups, lr=settings.learning_rate)
    decay = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / settings.steps))
    ) if settings.schedule == "cosine" else None  # fmt: skip
    sampler = EpisodeSampler(
        y_train, n_way=min(settings.n_way, len(np.unique(y_train))), n_shot=settings.n_shot,
        n_query=settings.n_query, n_episodes=settings.steps * settings.episodes_per_step,
        seed=settings.seed,
    )  # fmt: skip
    validate = _validator(x_val_in, y_val, settings)
    adapter = Adapter(head, center, dict(base), _all_classes(labels, y_val), settings)
    head.eval()
    adapter.history.append({"step": 0, "accuracy": validate(frozen), "seconds": 0.0})
    best_accuracy, best_state, stale = -1.0, None, 0
    start = time.perf_counter()
    episodes = sampler.sample()
    for step in range(1, settings.steps + 1):
        block = episodes[
            (step - 1) * settings.episodes_per_step : step * settings.episodes_per_step
        ]
        head.train()
        loss = prototypical_loss(
            head(inputs[torch.from_numpy(block.support).to(on)]),
            head(inputs[torch.from_numpy(block.query).to(on)]),
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss diverged at step {step}: lower the learning rate")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if decay is not None:
            decay.step()
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
    head.to("cpu").eval()
    return adapter


def _all_classes(*label_sets: np.ndarray) -> list[Any]:
    return sorted({c for labels in label_sets for c in np.unique(labels).tolist()}, key=str)


def _validator(
    x: torch.Tensor, y: np.ndarray, settings: AdapterSettings
) -> Callable[[Callable[[torch.Tensor], torch.Tensor]], float]:
    """Mean accuracy of 5-way prototypes (CL2N, squared Euclidean) on fixed validation
    episodes of the head's inputs ``x``, through a head (or the frozen features)."""
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

    def accuracy(head: Callable[[torch.Tensor], torch.Tensor]) -> float:
        grid = evaluate_episodes(_apply(head, x).numpy(), episodes, normalizations=["cl2n"])
        return float(grid.results[0].mean)

    return accuracy
