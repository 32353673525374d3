"""The all-class protocol with the encoder fine-tuned on each draw's shots (``evaluate --finetune``).

Each seed draws the same shots as :func:`~protoshot.evaluation.protocols.all_class_kshot` does
for the frozen encoder (same sampler, same seed), so the two are paired seed by seed. For each
draw and shot count the encoder is tuned on those shots alone (:mod:`protoshot.finetune`), the
shots, the test split and the class names are embedded with it (never cached: each encoder is
used once), and every configuration is evaluated on those vectors. One row per configuration,
marked ``finetune``, over the seeds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from protoshot.episodes import EpisodeSampler
from protoshot.evaluation.protocols import classify_test_split
from protoshot.evaluation.results import EvalResult, GridResult, mean_ci
from protoshot.labels import as_label_array


def all_class_finetuned(
    model: str,
    train_texts: Sequence[str],
    train_labels: Sequence[Any] | np.ndarray,
    test_texts: Sequence[str],
    test_labels: Sequence[Any] | np.ndarray,
    *,
    shots: Sequence[int],
    n_seeds: int,
    seed: int = 0,
    names: Mapping[Any, str] | None = None,
    device: str | None = None,
    progress: Callable[[int], None] | None = None,
    **grid: Any,
) -> GridResult:
    """All-class K-shot accuracy of the configurations in ``grid`` (methods, metrics,
    normalizations, as for :func:`~protoshot.evaluation.protocols.all_class_kshot`) on
    ``model`` fine-tuned on each draw.

    Shot counts below 2 are left out (one shot per class is not tuned). With ``names`` (class
    descriptions; an empty mapping for none) each class's description, else its readable name,
    is embedded by the tuned encoder, for the methods that use names.
    ``progress(1)`` is called after each draw and shot count.
    """
    from protoshot.finetune import finetuned
    from protoshot.pipeline import class_name_embeddings

    y_train, y_test = as_label_array(train_labels), as_label_array(test_labels)
    tuned_shots = sorted(k for k in set(shots) if k >= 2)
    if not tuned_shots:
        raise ValueError("fine-tuning needs 2 shots or more: give such a shot count")
    sampler = EpisodeSampler(
        y_train, n_way="all", n_shot=max(max(shots), 1), n_query=1, n_episodes=n_seeds, seed=seed
    )
    drawn = sampler.sample()
    rows: dict[tuple[Any, ...], list[EvalResult]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for episode in range(n_seeds):
            for k in tuned_shots:
                chosen = drawn.support[episode, :, :k].ravel()
                texts = [train_texts[i] for i in chosen]
                embedder = finetuned(
                    model, texts, y_train[chosen], folder, device=device, show_progress=False
                )
                class_embeddings = None
                if names is not None:  # as the frozen rows: every class named, or none
                    named, skipped = class_name_embeddings(
                        sampler.classes_.tolist(), embedder, descriptions=names, cache=False
                    )
                    class_embeddings = None if skipped else named
                shots_of_draw = np.arange(len(chosen)).reshape(1, -1, k)  # way by way
                part = classify_test_split(
                    _vectors(texts, embedder), shots_of_draw, drawn.ways[episode : episode + 1],
                    sampler.classes_, _vectors(test_texts, embedder), y_test, shots=[k],
                    class_embeddings=class_embeddings, device=device, **grid,
                )  # fmt: skip
                for result in part:
                    rows.setdefault(_key(result.config), []).append(result)
                if progress is not None:
                    progress(1)
    return GridResult([_over_seeds(draws) for draws in rows.values()])


def _vectors(texts: Sequence[str], embedder: Any) -> torch.Tensor:
    """``texts`` embedded by a tuned encoder, never cached (it is used once)."""
    from protoshot.embedders import embed

    return torch.from_numpy(embed(list(texts), embedder, cache=False, progress=False))


def _key(config: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, str(v)) for k, v in config.items()))


def _over_seeds(draws: list[EvalResult]) -> EvalResult:
    """One row from the one-seed results of each draw: mean ± CI over the draws."""
    per_seed = np.concatenate([r.per_episode for r in draws])
    mean, std, half = mean_ci(per_seed)

    def average(name: str) -> float | None:
        values = [getattr(r, name) for r in draws]
        return None if any(v is None for v in values) else float(np.mean(values))

    counts = [r.class_counts for r in draws if r.class_counts is not None]
    return EvalResult(
        mean, std, half, len(per_seed), {**draws[0].config, "finetune": True}, per_seed,
        macro_f1=average("macro_f1"), nll=average("nll"), ece=average("ece"),
        class_counts=np.sum(np.stack(counts), 0) if len(counts) == len(draws) else None,
        class_labels=draws[0].class_labels,
    )  # fmt: skip
