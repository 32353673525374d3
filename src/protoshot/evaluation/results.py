"""Results of an evaluation: per-episode accuracies, their mean and 95% confidence interval,
and a grid of configurations rendered as a table or JSON.

Used by every protocol (:mod:`~protoshot.evaluation.api`, :mod:`~protoshot.evaluation.protocols`)
and by the reports.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from protoshot._validation import ArrayLike, check_choice

CI_METHODS = ("normal", "t")


def mean_ci(
    per_episode: ArrayLike, *, confidence: float = 0.95, method: Literal["normal", "t"] = "normal"
) -> tuple[float, float, float]:
    """Mean, sample standard deviation and confidence half-width of per-episode accuracies.

    ``"normal"`` gives ``z * std / sqrt(E)`` (1.96 for 95%), the few-shot literature's convention;
    ``"t"`` uses Student's t quantile with ``E - 1`` degrees of freedom (wider for few episodes).
    """
    check_choice("ci method", method, CI_METHODS)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    acc = np.asarray(per_episode, dtype=np.float64).ravel()
    if acc.size == 0:
        raise ValueError("no episodes to summarise")
    mean = float(acc.mean())
    if acc.size == 1:
        return mean, 0.0, float("nan")
    std = float(acc.std(ddof=1))
    level = 0.5 + confidence / 2
    if method == "t":
        from scipy.special import stdtrit  # not scipy.stats: a second less at start-up

        quantile = float(stdtrit(acc.size - 1, level))
    else:
        quantile = NormalDist().inv_cdf(level)
    return mean, std, quantile * std / math.sqrt(acc.size)


@dataclass(frozen=True)
class EvalResult:
    """Accuracy of one configuration over ``n_episodes`` episodes (fractions in [0, 1])."""

    mean: float
    std: float
    ci95: float
    n_episodes: int
    config: dict[str, Any]
    per_episode: np.ndarray = field(repr=False)
    #: Mean difference to the baseline row on the same episodes, with its 95% half-width
    #: (``{"baseline": config, "mean": d, "ci95": h}``); see :func:`paired_differences`.
    paired: dict[str, Any] | None = None
    #: Means over episodes of the macro-F1 (over the classes with queries in each episode), of
    #: the negative log-likelihood of the true class, and of the expected calibration error
    #: (top-label, 15 bins): the probabilities are the softmax of the method's logits.
    macro_f1: float | None = None
    nll: float | None = None
    ece: float | None = None
    #: Per class over every episode: correct and all queries, float ``[2, n_classes]``, and the
    #: classes' labels (``None`` when the episodes' classes were not named).
    class_counts: np.ndarray | None = field(default=None, repr=False)
    class_labels: np.ndarray | None = field(default=None, repr=False)

    def per_class(self) -> list[dict[str, Any]]:
        """Each queried class's accuracy over every episode (``label``, ``accuracy``,
        ``queries``), hardest first; empty when the classes were not named."""
        if self.class_counts is None or self.class_labels is None:
            return []
        correct, queried = self.class_counts
        asked = np.flatnonzero(queried > 0)
        accuracy = correct[asked] / queried[asked]
        order = asked[np.argsort(accuracy, kind="stable")]
        return [
            {
                "label": self.class_labels[c].item(),
                "accuracy": float(correct[c] / queried[c]),
                "queries": int(queried[c]),
            }
            for c in order.tolist()
        ]

    def __str__(self) -> str:
        name = ", ".join(f"{k}={v}" for k, v in self.config.items())
        paired = "" if self.paired is None else f", {_delta(self.paired)} vs prototypes"
        return (
            f"{name}: {100 * self.mean:.2f}% ± {100 * self.ci95:.2f} "
            f"(95% CI, {self.n_episodes} episodes{paired})"
        )

    def class_table(self, n: int) -> Any:
        """A rich table of the ``n`` hardest classes (:meth:`per_class`)."""
        from rich.markup import escape
        from rich.table import Table

        rows = self.per_class()
        table = Table(
            title=escape(f"the {min(n, len(rows))} hardest of {len(rows)} classes: {self}")
        )
        for column in ("class", "accuracy %", "queries"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for row in rows[:n]:
            table.add_row(escape(str(row["label"])), _percent(row["accuracy"]), str(row["queries"]))
        return table

    def to_dict(self, *, per_episode: bool = False) -> dict[str, Any]:
        """Plain JSON-ready dict; ``per_episode=True`` adds the list of accuracies."""
        hidden = ("per_episode", "paired", "class_counts", "class_labels")
        out = {k: v for k, v in asdict(self).items() if k not in hidden}
        if math.isnan(self.ci95):  # one episode: no interval (JSON has no NaN)
            out["ci95"] = None
        if self.paired is not None:
            half = self.paired["ci95"]
            out["paired"] = {**self.paired, "ci95": None if math.isnan(half) else half}
        if per_episode:
            out["per_episode"] = self.per_episode.tolist()
        if self.class_labels is not None:
            out["per_class"] = self.per_class()
        return out


@dataclass(frozen=True)
class GridResult:
    """Results of several configurations evaluated on the same episodes."""

    results: list[EvalResult]

    def __iter__(self) -> Iterator[EvalResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def best(self) -> EvalResult:
        """The configuration with the highest mean accuracy, among the inductive ones when
        there are any (transductive results are not comparable with them)."""
        inductive = [r for r in self.results if not r.config.get("transductive")]
        return max(inductive or self.results, key=lambda r: r.mean)

    def best_per_shot(self) -> list[EvalResult]:
        """:meth:`best` at each shot count (settings that win at 1 shot often lose at 10), and
        for each embedder when several were evaluated."""
        groups = dict.fromkeys(
            (r.config.get("model"), r.config.get("n_shot")) for r in self.results
        )
        return [
            GridResult(
                [r for r in self.results if (r.config.get("model"), r.config.get("n_shot")) == g]
            ).best()
            for g in groups
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [r.to_dict() for r in self.results],
            "best": self.best().config,
            "best_per_shot": [r.config for r in self.best_per_shot()],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def table(self, title: str | None = None, *, macro_f1: bool = False) -> Any:
        """A ``rich.table.Table`` of mean accuracy ± 95% CI, the best row of each shot count
        (and embedder) marked.

        Settings every row shares go to the caption; the rest are a method, a shots and a
        settings column, so the table stays narrow however many methods it compares.
        ``macro_f1`` adds its column: worth the width when the queries are unbalanced (the
        all-class protocol), where accuracy alone can hide a class the method misses.
        """
        from rich.markup import escape
        from rich.table import Table

        keys = list(dict.fromkeys(k for r in self.results for k in r.config))
        values = {k: {str(r.config.get(k, "")) for r in self.results} for k in keys}
        shared = [k for k in keys if len(values[k]) == 1 and k != "method"]
        varying = [k for k in keys if k not in shared]
        columns = [k for k in ("method", "n_way", "n_shot", "n_query") if k in varying]
        settings = [k for k in varying if k not in columns and k not in _JSON_ONLY]
        caption = " · ".join(f"{_SHORT.get(k, k)} {next(iter(values[k]))}" for k in shared)
        table = Table(title=title, caption=escape(caption) or None)
        for key in columns:
            table.add_column(_SHORT.get(key, key))
        if settings:
            table.add_column("settings")
        table.add_column("acc %", justify="right")
        table.add_column("± CI", justify="right")
        f1 = macro_f1 and any(r.macro_f1 is not None for r in self.results)
        if f1:
            table.add_column("macro-F1 %", justify="right")
        paired = any(r.paired is not None for r in self.results)
        if paired:
            table.add_column("vs prototypes", justify="right")
        table.add_column("episodes", justify="right")
        best = self.best_per_shot()
        for i, r in enumerate(self.results):
            if r.config.get("transductive") and not self.results[i - 1].config.get("transductive"):
                table.add_section()  # transductive rows stand apart, below
            mark = any(r is b for b in best)
            setting = " ".join(
                f"{_SHORT.get(k, k)}={r.config[k]}" for k in settings if k in r.config
            )
            acc = f"{100 * r.mean:.2f}" + (" *" if mark else "")
            delta = [] if not paired else ["" if r.paired is None else _delta(r.paired)]
            table.add_row(
                *(escape(_cell(r.config, k)) for k in columns),
                *([escape(setting)] if settings else []),
                acc,
                f"{100 * r.ci95:.2f}",
                *([_percent(r.macro_f1)] if f1 else []),
                *delta,
                str(r.n_episodes),
                style="bold green" if mark else None,
            )
        return table

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=120, record=True, file=io.StringIO())
        console.print(self.table())
        return console.export_text()


def paired_differences(grid: GridResult) -> GridResult:
    """Each non-prototypes row with its mean difference to plain prototypes on the same episodes.

    The baseline of a row is the ``"prototypes"`` row with the same shots (squared Euclidean
    without normalisation when the grid has it, else the first such row). Episodes are shared,
    so the difference's CI is that of the per-episode differences: tighter than comparing two
    CIs, and the test of "never worse than prototypes".
    """
    baselines: dict[Any, EvalResult] = {}
    for r in grid:
        if _frozen_prototypes(r):
            plain = (
                r.config.get("normalization") == "none" and r.config.get("metric") == "sqeuclidean"
            )
            if plain or r.config["n_shot"] not in baselines:
                baselines[r.config["n_shot"]] = r
    out = []
    for r in grid:
        base = baselines.get(r.config["n_shot"])
        if base is None or _frozen_prototypes(r):
            out.append(r)
            continue
        diff = r.per_episode - base.per_episode
        mean, _, half = mean_ci(diff)
        paired = {"baseline": base.config, "mean": mean, "ci95": half}
        out.append(replace(r, paired=paired))
    return GridResult(out)


def _frozen_prototypes(r: EvalResult) -> bool:
    """A baseline row of :func:`paired_differences`: plain prototypes on the frozen encoder."""
    return r.config.get("method") == "prototypes" and not r.config.get("finetune")


def _cell(config: dict[str, Any], key: str) -> str:
    text = str(config.get(key, ""))
    if key == "method" and config.get("finetune"):
        text = f"{text} (fine-tuned)"
    return f"{text} (transductive)" if key == "method" and config.get("transductive") else text


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _delta(paired: dict[str, Any]) -> str:
    half = paired["ci95"]
    ci = "" if half is None or math.isnan(half) else f" ± {100 * half:.2f}"
    return f"{100 * paired['mean']:+.2f}{ci}"


#: Config keys too long for a table cell, or said otherwise; the JSON report has them.
_JSON_ONLY = ("candidates", "transductive", "finetune")  # shown in the method cell

_SHORT = {
    "n_way": "ways",
    "n_shot": "shots",
    "n_query": "queries",
    "normalization": "norm",
    "prior_weight": "prior",
}
