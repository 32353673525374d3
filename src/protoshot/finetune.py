"""Fit-time fine-tuning: adapt the top of a text encoder to the user's own shots.

The encoder's last ``layers`` transformer layers are trained on the support set with
cross-entropy through a cosine head initialised from the class prototypes (the frozen model's
own vectors, so training starts from nearest-prototype classification). Everything below is
frozen and run once: its hidden states stay in memory, so a step costs the top layers only.

The result is a :class:`TunedEncoder`: the changed weights alone (safetensors) and what they
were tuned from (JSON), with a fingerprint of its own, so the embedding cache never mixes tuned
and frozen vectors. ``tuned:<folder>`` (:mod:`protoshot.embedders.tuned`) embeds with it.

The settings are fixed, not chosen on the data reported: 10 epochs of batches of 32, Adam at
1e-4 for the layer and 1e-3 for the head, cosine scale 20 (the issue's recipe for a whole-model
fine-tune on BANKING77, with the head's step size of ``protoshot adapt --kind top``).
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoshot._validation import positive_int
from protoshot.labels import as_label_array

FORMAT_VERSION = 1
WEIGHTS = "encoder.safetensors"
CONFIG = "encoder.json"


#: Which models ``--finetune`` takes, for the messages that refuse others.
CAN_TUNE = "only BERT-like sentence-transformers text models (minilm, st:...) can be"
#: Texts of different lengths that check a model's split (padding included).
_PROBE = ["a short one", "a somewhat longer text, with punctuation, to check the padding mask"]


class NotTuned(ValueError):
    """Fine-tuning was not done (or was undone): the message says why; fit the frozen encoder."""


@dataclass(frozen=True)
class TuneSettings:
    """How the top of the encoder is trained (see the module's notes for the defaults)."""

    layers: int = 1
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3
    scale: float = 20.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("layers", "epochs", "batch_size"):
            positive_int(getattr(self, name), name)
        for name in ("learning_rate", "head_learning_rate", "scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


@dataclass
class TunedEncoder:
    """The tuned top layers of a text encoder, and what they were tuned from.

    ``base`` is :func:`protoshot.adapters.describe` of the frozen embedder; ``weights`` the
    state of its last ``settings.layers`` layers (keys ``"<i>.<parameter>"``, ``i`` counted
    from the first tuned layer); ``history`` the mean loss of each epoch.
    """

    base: dict[str, Any]
    weights: dict[str, np.ndarray]
    settings: TuneSettings
    classes: list[Any]
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the base embedder's fingerprint, the layers tuned and every weight."""
        h = hashlib.sha256(f"tuned\0{self.base['fingerprint']}\0{self.settings.layers}\0".encode())
        for name, array in sorted(self.weights.items()):
            h.update(f"{name}\0{array.dtype}\0{array.shape}\0".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``encoder.safetensors`` and ``encoder.json`` (naming the weights' SHA-256)."""
        from protoshot.store.weights import write_weights

        config = {
            "format_version": FORMAT_VERSION,
            "base": self.base,
            "fingerprint": self.fingerprint,
            "settings": asdict(self.settings),
            "classes": [c if isinstance(c, (int, str)) else str(c) for c in self.classes],
            "history": self.history,
            "seconds": self.seconds,
        }
        return write_weights(folder, (WEIGHTS, CONFIG), self.weights, config)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> TunedEncoder:
        """Read a folder written by :meth:`save` (nothing is unpickled), checked."""
        from protoshot.store.weights import read_weights

        config, weights = read_weights(
            folder, (WEIGHTS, CONFIG), "tuned encoder", (FORMAT_VERSION,)
        )
        try:
            encoder = cls(
                dict(config["base"]), weights, TuneSettings(**config["settings"]),
                list(config["classes"]), list(config.get("history", [])),
                float(config.get("seconds", 0.0)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{folder} holds a damaged tuned encoder ({err})") from None
        if encoder.fingerprint != config.get("fingerprint"):
            raise ValueError(f"{folder}: the weights do not give the recorded fingerprint")
        return encoder


def finetuned(
    model: str,
    texts: Sequence[str],
    labels: Sequence[Any] | np.ndarray,
    parent: str | os.PathLike[str],
    *,
    device: str | None = None,
    settings: TuneSettings | None = None,
    show_progress: bool | None = None,
) -> Any:
    """Fine-tune ``model`` (a text embedder's spec) on labelled ``texts``: the
    :class:`~protoshot.embedders.tuned.TunedEmbedder` to fit a classifier with, named
    ``tuned:<parent>/encoder-<fingerprint[:12]>`` (call its ``save()`` to write it there).

    Raises
    ------
    NotTuned
        See :func:`tune_text`: fit with the frozen ``model`` instead.
    """
    from protoshot._progress import progress_bar
    from protoshot.adapters import describe
    from protoshot.embedders import create_embedder
    from protoshot.embedders.tuned import PREFIX, TunedEmbedder, torch_spec

    options = {"device": device} if device else {}
    base = create_embedder(torch_spec(model), **options)
    settings = settings or TuneSettings()
    with progress_bar(show_progress, settings.epochs, "fine-tuning the encoder") as advance:
        encoder = tune_text(
            base, texts, labels, base=describe(base), settings=settings, progress=advance
        )
    folder = Path(parent).resolve() / f"encoder-{encoder.fingerprint[:12]}"
    return TunedEmbedder(base, encoder, f"{PREFIX}{folder}")


# ------------------------------------------------------------------------ the model's parts
@dataclass
class TextParts:
    """A sentence-transformers pipeline split for tuning: the transformer, its layer list and
    the modules after it (pooling, normalisation)."""

    model: Any
    transformer: Any
    layers: torch.nn.ModuleList
    after: list[torch.nn.Module]

    @classmethod
    def of(cls, embedder: Any) -> TextParts:
        """The parts of a PyTorch sentence-transformers embedder.

        Raises
        ------
        ValueError
            If the embedder gives no access to its transformer layers (a callable, an ONNX-only
            runtime, an image model), naming the reason.
        """
        model = getattr(embedder, "_model", None)
        modules = list(model) if isinstance(model, torch.nn.Sequential) else []
        transformer = getattr(modules[0], "auto_model", None) if modules else None
        layers = getattr(getattr(transformer, "encoder", None), "layer", None)
        if embedder.modality != "text" or not isinstance(layers, torch.nn.ModuleList):
            raise ValueError(f"{embedder.spec} cannot be fine-tuned: {CAN_TUNE}")
        return cls(model, transformer, layers, modules[1:])

    def check_split(self, embedder: Any, layers: int) -> None:
        """Refuse a model whose layers this split does not reproduce (its layers need inputs
        the split does not pass, e.g. MPNet's relative position bias): tuning it would train
        a different function than the one that embeds."""
        device = next(self.transformer.parameters()).device
        with torch.no_grad():
            again = self.top(self.layers[-layers:], *self.hidden_states(_PROBE, layers, device))
        if not np.allclose(again.float().cpu().numpy(), embedder.embed(_PROBE), atol=1e-4):
            raise ValueError(
                f"{embedder.spec} cannot be fine-tuned: its last layers, run on their own, do "
                f"not give its vectors (its architecture needs more than BERT's inputs); {CAN_TUNE}"
            )

    def hidden_states(
        self, texts: Sequence[str], layers: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen part's output for ``texts``: hidden states ``[n, T, D]`` below the last
        ``layers`` layers and the attention mask ``[n, T]``, padded to the longest text."""
        features = (getattr(self.model, "preprocess", None) or self.model.tokenize)(list(texts))
        names = ("input_ids", "attention_mask", "token_type_ids")
        inputs = {k: features[k].to(device) for k in names if k in features}
        states = []
        with torch.inference_mode():
            for start in range(0, len(texts), 64):
                chunk = {k: v[start : start + 64] for k, v in inputs.items()}
                out = self.transformer(**chunk, output_hidden_states=True)
                states.append(out.hidden_states[-1 - layers].clone())
        return torch.cat(states), inputs["attention_mask"].clone()

    def top(self, layers: torch.nn.ModuleList, states: torch.Tensor, mask: torch.Tensor) -> Any:
        """Sentence embeddings from hidden states: ``layers``, then pooling and normalisation."""
        blocked = (1.0 - mask[:, None, None, :].to(states.dtype)) * torch.finfo(states.dtype).min
        for layer in layers:
            out = layer(states, attention_mask=blocked)
            states = out[0] if isinstance(out, tuple) else out
        features = {"token_embeddings": states, "attention_mask": mask}
        for module in self.after:
            features = module(features)
        return features["sentence_embedding"]


def tune_text(
    embedder: Any,
    texts: Sequence[str],
    labels: Sequence[Any] | np.ndarray,
    *,
    base: dict[str, Any],
    settings: TuneSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> TunedEncoder:
    """Fine-tune the last ``settings.layers`` layers of ``embedder`` (a PyTorch
    sentence-transformers embedder) on labelled ``texts``; deterministic for a seed.

    ``base`` describes the frozen embedder the user chose (recorded, and the tuned encoder's
    fingerprint builds on it); ``progress(1)`` is called after each epoch.

    Raises
    ------
    NotTuned
        With one shot per class (nothing to adapt from beyond the prototypes), or when the loss
        diverges: fit the frozen encoder.
    ValueError
        With a model that cannot be tuned (its layers unreachable, or not reproduced by the
        split), naming the reason.
    """
    settings = settings or TuneSettings()
    y = as_label_array(labels)
    if len(y) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(y)} labels")
    classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2 or counts.max() < 2:
        raise NotTuned(
            "fine-tuning needs at least 2 classes and a class with 2 shots or more (with one "
            "shot per class there is nothing to adapt from beyond the prototypes)"
        )
    parts = TextParts.of(embedder)
    if settings.layers > len(parts.layers):
        raise ValueError(f"the model has {len(parts.layers)} layers, not {settings.layers}")
    parts.check_split(embedder, settings.layers)
    device = next(parts.transformer.parameters()).device
    start = time.perf_counter()
    states, mask = parts.hidden_states(texts, settings.layers, device)
    top = copy.deepcopy(parts.layers[-settings.layers :]).float()
    target = torch.as_tensor(codes, device=device)
    with torch.random.fork_rng(devices=_gpus(device)):
        torch.manual_seed(settings.seed)
        history = _train(parts, top, states, mask, target, len(classes), settings, progress)
    weights = {k: v.detach().cpu().numpy() for k, v in top.state_dict().items()}
    seconds = time.perf_counter() - start
    return TunedEncoder(base, weights, settings, classes.tolist(), history, seconds)


def _gpus(device: torch.device) -> list[int]:
    """The CUDA device whose random state the training may change (none on other devices)."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _train(
    parts: TextParts,
    top: torch.nn.ModuleList,
    states: torch.Tensor,
    mask: torch.Tensor,
    target: torch.Tensor,
    n_classes: int,
    settings: TuneSettings,
    progress: Callable[[int], None] | None,
) -> list[float]:
    """Cross-entropy through a cosine head (initialised from the prototypes) for
    ``settings.epochs`` epochs; returns the mean loss of each epoch."""
    lengths = mask.sum(1)

    def cropped(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows' states and mask up to their longest text: less padding to compute."""
        width = int(lengths[rows].max())
        return states[rows, :width], mask[rows, :width]

    with torch.no_grad():
        top.eval()
        every = torch.arange(len(target), device=target.device)
        frozen = torch.cat([parts.top(top, *cropped(rows)) for rows in every.split(64)])
        # each class's sum (its prototype's direction), as a product: deterministic on a GPU
        sums = torch.nn.functional.one_hot(target, n_classes).to(frozen.dtype).T @ frozen
    head = torch.nn.Parameter(torch.nn.functional.normalize(sums, dim=-1))
    optimizer = torch.optim.Adam([
        {"params": top.parameters(), "lr": settings.learning_rate},
        {"params": [head], "lr": settings.head_learning_rate},
    ])  # fmt: skip
    top.train()
    history = []
    for epoch in range(settings.epochs):
        order = torch.randperm(len(target), device=target.device)
        losses = []
        for batch in order.split(settings.batch_size):
            z = parts.top(top, *cropped(batch))
            logits = (
                settings.scale
                * torch.nn.functional.normalize(z, dim=-1)
                @ (torch.nn.functional.normalize(head, dim=-1).T)
            )
            loss = torch.nn.functional.cross_entropy(logits, target[batch])
            if not torch.isfinite(loss):  # the caller's layers were never touched (a copy)
                raise NotTuned(
                    f"the loss diverged (not finite) in epoch {epoch + 1}: the frozen weights "
                    "are kept"
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)))
        if progress is not None:
            progress(1)
    top.eval()
    return history
