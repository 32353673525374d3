"""Reports of evaluation results: a JSON document with a published schema, and PNG plots."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from protoshot.evaluation.results import GridResult

SCHEMA_ID = "protoshot.evaluate/2"


def report_dict(grid: GridResult, **context: Any) -> dict[str, Any]:
    """The ``--json`` document of ``protoshot evaluate`` (see :func:`json_schema`)."""
    return {"schema": SCHEMA_ID, **context, **grid.to_dict()}


def json_schema() -> dict[str, Any]:
    """The JSON Schema that :func:`report_dict` documents follow."""
    text = resources.files("protoshot").joinpath("schemas/evaluate.schema.json").read_text()
    return dict(json.loads(text))


def plot_grid(grid: GridResult, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Accuracy vs shots, one line per configuration (and embedder), 95% CI bands; written as
    PNG. ``title`` (the data and model, say) goes above the episode settings."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'protoshot[plot]'") from err
    out = Path(path)
    if not out.parent.is_dir():
        raise ValueError(f"cannot write the plot: folder {out.parent} does not exist")
    if out.suffix.lower() != ".png":
        raise ValueError(f"the plot is written as PNG; give a .png path, got {out.name}")
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for r in grid:
        lines.setdefault(_line_name(r.config), []).append(
            (float(r.config["n_shot"]), 100 * r.mean, 100 * r.ci95)
        )
    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=120)
    for i, (name, points) in enumerate(lines.items()):
        points.sort()
        shots, mean, half = (list(v) for v in zip(*points, strict=True))
        # marker and dash vary with the line, so near-identical lines stay apart in print too
        marker, dash = "osD^vPX"[i % 7], ("-", "--", ":", "-.")[i // 7 % 4]
        ax.plot(shots, mean, label=name, marker=marker, linestyle=dash)
        lo = [m - h for m, h in zip(mean, half, strict=True)]
        hi = [m + h for m, h in zip(mean, half, strict=True)]
        ax.fill_between(shots, lo, hi, alpha=0.2)
    ax.set_xlabel("shots per class")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(sorted({s for pts in lines.values() for s, _, _ in pts}))
    ax.grid(alpha=0.3)
    ax.legend(title="method: metric / normalisation", fontsize="small")
    first = grid.results[0].config
    episodes = f"{first['n_way']}-way, {grid.results[0].n_episodes} episodes, 95% CI bands"
    ax.set_title(f"{title}\n{episodes}" if title else episodes, fontsize="medium")
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def _line_name(config: dict[str, Any]) -> str:
    """``method: metric / normalisation`` (the parts a configuration has), one line per name."""
    setting = " / ".join(str(config[k]) for k in ("metric", "normalization") if k in config)
    extra = " ".join(
        f"{k}={config[k]}" for k in ("prior_weight", "penalty", "shrinkage") if k in config
    )
    method = str(config.get("method", "prototypes"))
    transductive = " (fine-tuned)" if config.get("finetune") else ""
    transductive += " (transductive)" if config.get("transductive") else ""
    model = f"{config['model']} · " if "model" in config else ""
    return f"{model}{method}{transductive}: {setting}" + (f" {extra}" if extra else "")


#: Keys of a result's config that describe the episodes, not the method.
EPISODE_KEYS = ("n_way", "n_shot", "n_query", "transductive", "model")


def chosen_config(
    report: dict[str, Any], n_shot: float, model: str | None = None
) -> dict[str, Any]:
    """The configuration an ``evaluate --json`` report found best at the shot count nearest
    ``n_shot`` (the shots per class of the data to fit), without its episode keys; with
    several embedders in the report, among the rows of ``model``.

    Reports without ``best_per_shot`` give their overall ``best``.

    Raises
    ------
    ValueError
        If ``report`` is not an ``evaluate --json`` document.
    """
    if not isinstance(report, dict) or not str(report.get("schema", "")).startswith(
        "protoshot.evaluate/"
    ):
        raise ValueError("not a `protoshot evaluate --json` report (its schema is missing)")
    candidates = report.get("best_per_shot") or [report.get("best")]
    if not all(isinstance(c, dict) and "method" in c for c in candidates):
        raise ValueError("the report names no best configuration")
    mine = [c for c in candidates if c.get("model") in (None, model)]
    if not mine:
        others = sorted({str(c.get("model")) for c in candidates})
        raise ValueError(
            f"the report's best configurations use {', '.join(others)}, not {model}: pass "
            "--model with one of them"
        )
    candidates = mine
    # nearest shot count; on a tie the larger one (more shots estimate settings better)
    best = min(candidates, key=lambda c: (abs(c.get("n_shot", 0) - n_shot), -c.get("n_shot", 0)))
    return {k: v for k, v in best.items() if k not in EPISODE_KEYS}
