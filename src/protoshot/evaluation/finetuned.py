"""Evaluation with the encoder fine-tuned on each draw's shots (``evaluate --finetune``).

Each episode (all-class protocol: each seed) draws the same shots and queries as the frozen
encoder's evaluation does (same sampler, same seed), so the two are paired episode by episode.
For each draw and shot count the encoder is tuned on those shots alone
(:mod:`protoshot.finetune`); the shots, the queries (all-class: the whole test split) and the
class names are embedded with it (never cached: each encoder is used once), and every
configuration is evaluated on those vectors. One row per configuration, marked ``finetune``,
over the episodes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from protoshot.episodes import Episodes, EpisodeSampler
from protoshot.evaluation.api import aligned_class_embeddings, evaluate_episodes
from protoshot.evaluation.protocols import classify_test_split
from protoshot.evaluation.results import EvalResult, GridResult, mean_ci
from protoshot.labels import as_label_array


def finetuned_grid(
    model: str,
    texts: Sequence[str],
    labels: Sequence[Any] | np.ndarray,
    *,
    test_texts: Sequence[str] | None = None,
    test_labels: Sequence[Any] | np.ndarray | None = None,
    n_way: int | Literal["all"] = "all",
    n_query: int = 15,
    shots: Sequence[int],
    n_episodes: int,
    seed: int = 0,
    names: Mapping[Any, str] | None = None,
    device: str | None = None,
    progress: Callable[[int], None] | None = None,
    **grid: Any,
) -> GridResult:
    """The configurations in ``grid`` (methods, metrics, normalizations, dtype) on ``model``
    fine-tuned on each draw's shots: the all-class protocol when ``test_texts`` are given
    (``n_episodes`` seeds, as :func:`~protoshot.evaluation.protocols.all_class_kshot`), else
    ``n_way``-way episodes of ``n_query`` queries per class, as
    :func:`~protoshot.evaluation.evaluate_grid` draws them (same sampler, same seed).

    Shot counts below 2 are left out (one shot per class is not tuned). With ``names`` (class
    descriptions; an empty mapping for none) each class's description, else its readable name,
    is embedded by the tuned encoder, for the methods that use names. ``progress(1)`` is
    called after each draw and shot count.
    """
    from protoshot.finetune import finetuned
    from protoshot.pipeline import class_name_embeddings

    all_class = test_texts is not None
    y = as_label_array(labels)
    tuned_shots = sorted(k for k in set(shots) if k >= 2)
    if not tuned_shots:
        raise ValueError("fine-tuning needs 2 shots or more: give such a shot count")
    sampler = EpisodeSampler(
        y, n_way="all" if all_class else n_way, n_shot=max(max(shots), 1),
        n_query=1 if all_class else n_query, n_episodes=n_episodes, seed=seed,
    )  # fmt: skip
    drawn, classes = sampler.sample(), sampler.classes_
    rows: dict[tuple[Any, ...], list[EvalResult]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for episode in range(n_episodes):
            ways = drawn.ways[episode : episode + 1]
            for k in tuned_shots:
                chosen = drawn.support[episode, :, :k].ravel()  # way by way
                embedder = finetuned(
                    model, [texts[i] for i in chosen], y[chosen], folder, device=device,
                    show_progress=False,
                )  # fmt: skip
                class_embeddings = None
                if names is not None:  # as the frozen rows: every class named, or none
                    named, skipped = class_name_embeddings(
                        classes.tolist(), embedder, descriptions=names, cache=False
                    )
                    class_embeddings = None if skipped else named
                support = _vectors([texts[i] for i in chosen], embedder)
                layout = np.arange(len(chosen)).reshape(1, -1, k)
                if test_texts is not None and test_labels is not None:
                    part = classify_test_split(
                        support, layout, ways, classes, _vectors(test_texts, embedder),
                        as_label_array(test_labels), shots=[k],
                        class_embeddings=class_embeddings, device=device, **grid,
                    )  # fmt: skip
                else:
                    asked = drawn.query[episode].ravel()
                    queries = _vectors([texts[i] for i in asked], embedder)
                    rows_of_queries = (len(chosen) + np.arange(len(asked))).reshape(
                        1, len(ways[0]), -1
                    )
                    named_rows = aligned_class_embeddings(class_embeddings, classes)
                    part = evaluate_episodes(
                        torch.cat([support, queries]), Episodes(layout, rows_of_queries, ways),
                        shots=[k], class_embeddings=named_rows, class_labels=classes,
                        device=device, **grid,
                    )  # fmt: skip
                for result in part:
                    rows.setdefault(_key(result.config), []).append(result)
                if progress is not None:
                    progress(1)
    return GridResult([_over_draws(draws) for draws in rows.values()])


def _vectors(texts: Sequence[str], embedder: Any) -> torch.Tensor:
    """``texts`` embedded by a tuned encoder, never cached (it is used once)."""
    from protoshot.embedders import embed

    return torch.from_numpy(embed(list(texts), embedder, cache=False, progress=False))


def _key(config: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, str(v)) for k, v in config.items()))


def _over_draws(draws: list[EvalResult]) -> EvalResult:
    """One row from the one-episode results of each draw: mean ± CI over the draws."""
    per_draw = np.concatenate([r.per_episode for r in draws])
    mean, std, half = mean_ci(per_draw)

    def average(name: str) -> float | None:
        values = [getattr(r, name) for r in draws]
        return None if any(v is None for v in values) else float(np.mean(values))

    counts = [r.class_counts for r in draws if r.class_counts is not None]
    summed = None
    if counts and len(counts) == len(draws):  # an episode counts the classes up to its last way
        summed = np.zeros((2, max(c.shape[-1] for c in counts)))
        for c in counts:
            summed[:, : c.shape[-1]] += c
    return EvalResult(
        mean, std, half, len(per_draw), {**draws[0].config, "finetune": True}, per_draw,
        macro_f1=average("macro_f1"), nll=average("nll"), ece=average("ece"),
        class_counts=summed,
        class_labels=draws[0].class_labels,
    )  # fmt: skip
