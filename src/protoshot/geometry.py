"""The geometry of an embedding space, per normalisation: why one normalisation classifies better.

For each normalisation (CL2N centres on the mean of all the embeddings given):

- **hubness**: skewness of the k-occurrence (how often each point is among the others' ``k``
  nearest neighbours; Radovanovic et al. 2010). A few "hubs" near everything make nearest-mean
  rules err toward them; high positive skew = strong hubs.
- **anisotropy**: mean cosine between random pairs (0 when directions are spread, near 1 when
  every vector points the same way), and the **effective rank** of the centred embeddings
  (Roy & Vetterli 2007: how many directions carry the variance).
- **class separation**: mean distance of a sample to its own class mean over the mean distance
  between class means (lower = tighter, better separated classes).
- **prototype norm spread**: coefficient of variation of the class means' norms (unequal norms
  bias squared Euclidean scores toward small-norm classes).
- **confusable pairs**: the classes whose means are closest.

:func:`inspect_geometry` returns a :class:`GeometryReport` (a table, JSON, a PNG with a 2-D PCA
projection coloured by class).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoshot._validation import ArrayLike, as_float_tensor, check_choice
from protoshot.labels import encode_labels
from protoshot.maths.normalize import NORMALIZATIONS, normalize_tensor


@dataclass(frozen=True)
class GeometryReport:
    """Geometry measures per normalisation (``measures[norm][name]``) and the data they came from."""

    measures: dict[str, dict[str, Any]]
    n_samples: int
    n_classes: int
    k: int
    #: float [n, 2] per normalisation: a PCA projection of the sample, and its class positions.
    projections: dict[str, np.ndarray]
    projection_labels: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "n_classes": self.n_classes,
            "k": self.k,
            "normalizations": self.measures,
        }

    def table(self, title: str | None = None) -> Any:
        """A ``rich.table.Table``: one row per normalisation."""
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=title, caption=f"hubness: k = {self.k}; {self.n_samples} samples")
        for column in ("norm", "hubness", "mean cosine", "eff. rank", "within / between",
                       "norm spread", "closest classes"):  # fmt: skip
            table.add_column(
                column, justify="left" if column in ("norm", "closest classes") else "right"
            )
        for norm, m in self.measures.items():
            pair = m["confusable_pairs"][0] if m["confusable_pairs"] else None
            table.add_row(
                norm,
                f"{m['hubness']:.2f}",
                f"{m['mean_cosine']:.3f}",
                f"{m['effective_rank']:.1f}",
                f"{m['within_between']:.3f}",
                f"{m['prototype_norm_spread']:.3f}",
                "" if pair is None else escape(f"{pair[0]} / {pair[1]}"),
            )
        return table

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=120, record=True, file=io.StringIO())
        console.print(self.table())
        return console.export_text()

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """A PNG: per normalisation, the PCA projection coloured by class, with its measures."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ImportError("plots need matplotlib: pip install 'protoshot[plot]'") from err
        out = Path(path)
        if out.suffix.lower() != ".png" or not out.parent.is_dir():
            raise ValueError(f"give a .png path in an existing folder, got {out}")
        norms = list(self.projections)
        fig, axes = plt.subplots(1, len(norms), figsize=(4.2 * len(norms), 4.4), dpi=110)
        for ax, norm in zip(np.atleast_1d(axes), norms, strict=True):
            xy, m = self.projections[norm], self.measures[norm]
            ax.scatter(xy[:, 0], xy[:, 1], c=self.projection_labels, cmap="tab10", s=6)
            ax.set_title(norm)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(
                f"hubness {m['hubness']:.2f} · cos {m['mean_cosine']:.2f}\n"
                f"eff. rank {m['effective_rank']:.0f} · within/between {m['within_between']:.2f}",
                fontsize="small",
            )
        fig.suptitle(title or f"PCA, {len(np.unique(self.projection_labels))} classes shown")
        fig.tight_layout()
        fig.savefig(out, format="png")
        plt.close(fig)
        return out


def inspect_geometry(
    embeddings: ArrayLike,
    labels: Sequence[Any] | np.ndarray,
    *,
    normalizations: Sequence[str] = NORMALIZATIONS,
    k: int = 10,
    max_samples: int = 5000,
    n_pairs: int = 5,
    seed: int = 0,
) -> GeometryReport:
    """Measure the embedding space under each normalisation (see the module docstring).

    At most ``max_samples`` embeddings (a seeded sample) enter the neighbour and projection
    measures; class means use every embedding.
    """
    for norm in normalizations:
        check_choice("normalization", norm, NORMALIZATIONS)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = as_float_tensor(embeddings, "embeddings", ndim=2, dtype=torch.float64)
    classes, codes = encode_labels(labels)
    if len(codes) != len(x):
        raise ValueError(f"embeddings have {len(x)} rows but labels have {len(codes)}")
    if len(classes) < 2 or min(max_samples, len(x)) <= k:
        raise ValueError(
            f"need at least 2 classes and more than k={k} embeddings (max_samples included)"
        )
    sample = np.sort(
        np.random.default_rng(seed).choice(len(x), min(max_samples, len(x)), replace=False)
    )
    shown = np.isin(codes[sample], np.arange(min(10, len(classes))))
    measures, projections = {}, {}
    for norm in dict.fromkeys(normalizations):
        z = normalize_tensor(x, norm, x.mean(0))
        rng = np.random.default_rng([seed, 1])  # the same pairs for every normalisation
        measures[norm] = _measures(z, torch.from_numpy(codes), classes, sample, k, n_pairs, rng)
        projections[norm] = _pca(z[sample][shown])
    return GeometryReport(measures, len(x), len(classes), k, projections, codes[sample][shown])


def _measures(
    z: torch.Tensor,
    codes: torch.Tensor,
    classes: np.ndarray,
    sample: np.ndarray,
    k: int,
    n_pairs: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    s = z[torch.from_numpy(sample)]
    n_classes = len(classes)
    means = torch.zeros(n_classes, z.shape[1], dtype=z.dtype).index_add_(0, codes, z)
    means /= torch.bincount(codes, minlength=n_classes).unsqueeze(-1).to(z.dtype)
    mean_dist = torch.cdist(means, means)
    within = (z - means[codes]).norm(dim=1).mean()
    between = mean_dist.sum() / (n_classes * (n_classes - 1))
    norms = means.norm(dim=1)
    unit = s / s.norm(dim=1, keepdim=True).clamp_min(1e-12)
    i, j = rng.integers(0, len(s), (2, 4000))
    keep = torch.from_numpy(i != j)
    cosine = (unit[torch.from_numpy(i)] * unit[torch.from_numpy(j)]).sum(1)[keep].mean()
    first, second = torch.triu_indices(n_classes, n_classes, 1)
    closest = torch.argsort(mean_dist[first, second], stable=True)[:n_pairs]
    pairs = [(int(first[p]), int(second[p])) for p in closest]
    return {
        "hubness": _hubness(s, k),
        "mean_cosine": float(cosine),
        "effective_rank": _effective_rank(s),
        "within_between": float(within / between) if between > 0 else float("inf"),
        "prototype_norm_spread": float(norms.std() / norms.mean().clamp_min(1e-12)),
        "confusable_pairs": [[classes[a].item(), classes[b].item()] for a, b in pairs],
    }


def _hubness(s: torch.Tensor, k: int) -> float:
    """Skewness of the k-occurrence counts among the rows of ``s``."""
    occurrence = torch.zeros(len(s), dtype=torch.float64)
    for start in range(0, len(s), 1024):
        d = torch.cdist(s[start : start + 1024], s)
        d[torch.arange(len(d)), torch.arange(start, start + len(d))] = float("inf")
        neighbours = d.topk(k, largest=False).indices.flatten()
        occurrence += torch.bincount(neighbours, minlength=len(s)).double()
    centred = occurrence - occurrence.mean()
    return float(centred.pow(3).mean() / centred.pow(2).mean().pow(1.5).clamp_min(1e-12))


def _effective_rank(s: torch.Tensor) -> float:
    """``exp`` of the entropy of the normalised singular values of the centred rows."""
    values = torch.linalg.svdvals(s - s.mean(0))
    p = values / values.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _pca(s: torch.Tensor) -> np.ndarray:
    """The first two principal coordinates of the rows (zeros where there are fewer)."""
    out = np.zeros((len(s), 2))
    if len(s) > 1:
        centred = s - s.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        part = (centred @ v[:2].T).numpy()
        out[:, : part.shape[1]] = part
    return out
