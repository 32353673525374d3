"""Batched meta-test evaluation: accuracy over many episodes, mean and 95% confidence interval.

Every configuration (metric x normalisation x shots) is scored on the *same* episodes, so their
differences are not sampling noise. Smaller shot counts use the first ``k`` shots of each class
of episodes drawn with the largest count, with the same queries.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from protoshot._device import best_device, parse_dtype
from protoshot._kernels import Gatherer
from protoshot._validation import ArrayLike, as_float_tensor, check_choice, check_same_features
from protoshot.episodes import Episodes, EpisodeSampler
from protoshot.maths.distances import METRICS, scores_from_products, squared_norms
from protoshot.maths.normalize import EPS, NORMALIZATIONS

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
    from scipy import stats

    dist = stats.t(df=acc.size - 1) if method == "t" else stats.norm()
    return mean, std, float(dist.ppf(0.5 + confidence / 2) * std / math.sqrt(acc.size))


@dataclass(frozen=True)
class EvalResult:
    """Accuracy of one configuration over ``n_episodes`` episodes (fractions in [0, 1])."""

    mean: float
    std: float
    ci95: float
    n_episodes: int
    config: dict[str, Any]
    per_episode: np.ndarray = field(repr=False)

    def __str__(self) -> str:
        name = ", ".join(f"{k}={v}" for k, v in self.config.items())
        return (
            f"{name}: {100 * self.mean:.2f}% ± {100 * self.ci95:.2f} "
            f"(95% CI, {self.n_episodes} episodes)"
        )

    def to_dict(self, *, per_episode: bool = False) -> dict[str, Any]:
        """Plain JSON-ready dict; ``per_episode=True`` adds the list of accuracies."""
        out = {k: v for k, v in asdict(self).items() if k != "per_episode"}
        if math.isnan(self.ci95):  # one episode: no interval (JSON has no NaN)
            out["ci95"] = None
        if per_episode:
            out["per_episode"] = self.per_episode.tolist()
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
        """The configuration with the highest mean accuracy."""
        return max(self.results, key=lambda r: r.mean)

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.results], "best": self.best().config}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def table(self, title: str | None = None) -> Any:
        """A ``rich.table.Table`` of mean accuracy ± 95% CI, the best row marked."""
        from rich.table import Table

        table = Table(title=title)
        keys = list(self.results[0].config)
        for key in keys:
            table.add_column(_SHORT.get(key, key))
        table.add_column("acc %", justify="right")
        table.add_column("± CI", justify="right")
        table.add_column("episodes", justify="right")
        best = self.best()
        for r in self.results:
            mark = r is best
            cells = [str(r.config[k]) for k in keys]
            acc = f"{100 * r.mean:.2f}" + (" *" if mark else "")
            table.add_row(
                *cells,
                acc,
                f"{100 * r.ci95:.2f}",
                str(r.n_episodes),
                style="bold green" if mark else None,
            )
        return table

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=120, record=True, file=io.StringIO())
        console.print(self.table())
        return console.export_text()


def _accuracies(
    rows: Gatherer,
    episodes: Episodes,
    configs: Sequence[tuple[int, str, str]],
    center: torch.Tensor | None,
) -> torch.Tensor:
    """Correct-query counts ``[n_configs, e]`` of each (shots, normalisation, metric) on a chunk of episodes.

    The queries are the bulk of the data, so they are read once: normalising a query is an affine
    map ``a_q (q - c)``, hence every configuration's scores follow from the raw products of the
    queries with all configurations' prototypes and centres, taken in one pass. The support side
    uses the same fact: a normalised prototype is a weighted sum of raw support rows (see
    :func:`_prototypes`), so no support embedding is ever copied out of the table.
    """
    e, n, q = len(episodes), episodes.n_way, episodes.n_query
    x = rows.x
    dev = x.device
    query = torch.from_numpy(episodes.query).to(dev)
    q_sq = rows.take("q_sq", query.reshape(-1), rows.sq_norms).view(e, n * q)
    support = torch.from_numpy(episodes.support).to(dev)
    n_support = None if episodes.n_support is None else torch.from_numpy(episodes.n_support).to(dev)

    refs: list[torch.Tensor] = []
    parts: dict[tuple[int, str], tuple[int, torch.Tensor, torch.Tensor | None]] = {}
    for k, norm in dict.fromkeys((k, norm) for k, norm, _ in configs):
        protos, c = _prototypes(rows, episodes, support[:, :, :k], n_support, norm, center)
        parts[k, norm] = (sum(r.shape[1] for r in refs), protos, c)
        refs += [protos] if c is None else [protos, c]
    # low-precision products (bf16 / fp16 on GPUs) are combined in float32
    acc = torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype
    all_refs = refs[0] if len(refs) == 1 else torch.cat(refs, dim=1)
    products = rows.products(query, episodes.ways, all_refs).to(acc)

    target = torch.arange(n, device=dev).repeat_interleave(q)
    out = torch.empty(len(configs), e, device=dev, dtype=torch.int64)
    for row, (k, norm, metric) in enumerate(configs):
        col, protos, c = parts[k, norm]
        qp = products[..., col : col + n]
        base_sq = q_sq
        if c is not None:  # (q - c).p = q.p - c.p and |q - c|^2 = |q|^2 - 2 q.c + |c|^2
            qc = products[..., col + n]
            qp = qp - torch.bmm(c, protos.transpose(1, 2)).to(acc)
            base_sq = (q_sq - 2.0 * qc + squared_norms(c.to(acc))).clamp_min(0.0)
        if norm != "none":  # the query's L2 normalisation scales its products
            inv = 1.0 / base_sq.sqrt().clamp_min(EPS)
            qp, base_sq = qp * inv.unsqueeze(-1), base_sq * inv.square()
        p_sq = squared_norms(protos.to(acc))
        pred = scores_from_products(qp, base_sq, p_sq, metric).argmax(-1)
        out[row] = (pred == target).sum(-1)
    return out


def _prototypes(
    rows: Gatherer,
    episodes: Episodes,
    support: torch.Tensor,
    n_support: torch.Tensor | None,
    norm: str,
    center: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prototypes ``[E, N, D]`` of ``support`` indices ``[E, N, K]``, and the cl2n centre ``[E, 1, D]``.

    Normalising a support row is ``(x - c) / |x - c|``, so a prototype is the weighted sum
    ``sum_s w_s x_s - c sum_s w_s`` with ``w_s = 1 / (K |x_s - c|)``, where
    ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` needs only the table's squared norms and the products
    with the centre. Each sum is one fused gather-and-add over the table.
    """
    e, n, k = support.shape
    x = rows.x
    mask = None  # balanced: every shot counts; unbalanced: the first n_support of each class
    if n_support is not None:
        mask = (torch.arange(k, device=x.device) < n_support.unsqueeze(-1)).to(rows.sq_norms.dtype)
    c = None
    if norm == "cl2n":
        c = (
            center.expand(e, -1)
            if center is not None
            else rows.bag_means(
                support.reshape(e, 1, n * k),
                episodes.ways[:, :1],
                None if mask is None else (mask / mask.sum((1, 2), keepdim=True)).view(e, 1, -1),
            ).squeeze(1)
        ).unsqueeze(1)
    weights = None if mask is None else mask / mask.sum(-1, keepdim=True)
    if norm != "none":
        sq = rows.sq_norms[support]
        if c is not None:
            xc = rows.products(support, episodes.ways, c).view(e, n, k).to(sq.dtype)
            sq = sq - 2.0 * xc + squared_norms(c.to(sq.dtype)).unsqueeze(-1)
        inv_norm = 1.0 / sq.clamp_min(0.0).sqrt().clamp_min(EPS)
        weights = inv_norm / k if weights is None else weights * inv_norm
    protos = rows.bag_means(support, episodes.ways, weights)
    if c is not None and weights is not None:
        protos.addcmul_(c, weights.sum(-1, keepdim=True).to(x.dtype), value=-1.0)
    return protos, c


def evaluate_episodes(
    embeddings: ArrayLike,
    episodes: Episodes | Iterable[Episodes],
    *,
    shots: Sequence[int] | None = None,
    metrics: Sequence[str] = ("sqeuclidean",),
    normalizations: Sequence[str] = ("none",),
    center: ArrayLike | None = None,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    ci: Literal["normal", "t"] = "normal",
    progress: bool = False,
) -> GridResult:
    """Evaluate configurations on given episodes (a block, or an iterable of blocks).

    Parameters
    ----------
    embeddings : float [n_samples, D]
        The embedding table the episode indices point into.
    episodes : Episodes or iterable of Episodes
        E.g. an :class:`EpisodeSampler` (iterated block by block, so memory stays bounded).
    shots : sequence of int, optional
        Evaluate with the first ``k`` shots of each class for each ``k``; default the episodes' own.
    metrics, normalizations : sequences of names
        See :data:`protoshot.METRICS` and :data:`protoshot.NORMALIZATIONS`.
    center : float [D], optional
        Fixed centre for ``"cl2n"`` (e.g. the base classes' mean); default each episode's support mean.
    chunk_size : int, optional
        Episodes computed at once; peak memory grows linearly with it, not with the episode
        count. By default as many as keep a chunk's prototypes near 64 MiB.
    device, dtype
        Where and in which precision to compute (``"bfloat16"`` / ``"float16"`` for GPUs).
    ci : {"normal", "t"}
        Confidence interval method (see :func:`mean_ci`).
    progress : bool
        Show a progress bar over episodes.
    """
    for m in metrics:
        check_choice("metric", m, METRICS)
    for nm in normalizations:
        check_choice("normalization", nm, NORMALIZATIONS)
    check_choice("ci method", ci, CI_METHODS)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dev = best_device(device)
    x = as_float_tensor(embeddings, "embeddings", ndim=2).to(dev, parse_dtype(dtype)).contiguous()
    rows = Gatherer(x)
    c = None
    if center is not None:
        c = as_float_tensor(center, "center", ndim=1).to(dev, x.dtype)
        check_same_features(x, c, "embeddings", "center")
    blocks = [episodes] if isinstance(episodes, Episodes) else episodes
    total = len(episodes) if isinstance(episodes, Sized) else None

    configs: list[tuple[int, str, str]] | None = None
    chunks: list[torch.Tensor] = []
    with _progress(progress, total) as advance:
        for block in blocks:
            if configs is None:
                configs = _configs(block, shots, normalizations, metrics)
            _check_indices(block, x.shape[0])
            step = chunk_size or _auto_chunk(block, x)
            for start in range(0, len(block), step):
                part = block[start : start + step]
                chunks.append(_accuracies(rows, part, configs, c).cpu())
                advance(len(part))
    if configs is None:
        raise ValueError("no episodes to evaluate")
    acc = torch.cat(chunks, dim=1).numpy() / (block.n_way * block.n_query)
    n_way = block.n_way
    n_query = block.n_query
    results = []
    for row, (k, norm, metric) in zip(acc, configs, strict=True):
        mean, std, half = mean_ci(row, method=ci)
        shot = f"{block.n_support.min()}-{block.n_shot}" if block.n_support is not None else k
        config = {
            "n_way": n_way,
            "n_shot": shot,
            "n_query": n_query,
            "normalization": norm,
            "metric": metric,
        }
        results.append(EvalResult(mean, std, half, row.size, config, row))
    return GridResult(results)


def _configs(
    block: Episodes, shots: Sequence[int] | None, norms: Sequence[str], metrics: Sequence[str]
) -> list[tuple[int, str, str]]:
    if shots is None:
        shots = [block.n_shot]
    elif block.n_support is not None:
        raise ValueError("shots cannot be chosen for episodes with unbalanced supports")
    for k in shots:
        if not 1 <= k <= block.n_shot:
            raise ValueError(f"shots must be between 1 and the episodes' {block.n_shot}, got {k}")
    return list(itertools.product(sorted(set(shots)), dict.fromkeys(norms), dict.fromkeys(metrics)))


_CHUNK_BYTES = 64 * 2**20


def _auto_chunk(block: Episodes, x: torch.Tensor) -> int:
    """Episodes whose prototypes and references take about 64 MiB: enough episodes per chunk
    that each class recurs many times (the fused kernel then finds its rows in cache) and the
    per-chunk overhead is amortised, while memory stays bounded (``benchmarks/episodes.py``)."""
    rows = 2 * block.n_way
    return max(8, _CHUNK_BYTES // (rows * x.shape[1] * x.element_size()))


def _check_indices(block: Episodes, n_samples: int) -> None:
    high = max(int(block.support.max()), int(block.query.max()))
    if high >= n_samples or min(int(block.support.min()), int(block.query.min())) < 0:
        raise ValueError(f"episode index {high} is out of range for {n_samples} embeddings")


_SHORT = {"n_way": "ways", "n_shot": "shots", "n_query": "queries", "normalization": "norm"}


class _progress:
    """A rich progress bar over episodes when asked for, else a no-op."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        self.enabled, self.total = enabled, total

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda _n: None
        from rich.progress import Progress

        self._bar = Progress(transient=True)
        self._bar.start()
        task = self._bar.add_task("episodes", total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()


def evaluate_grid(
    embeddings: ArrayLike,
    labels: Sequence[Any] | np.ndarray,
    *,
    n_way: int | Literal["all"] = 5,
    shots: Sequence[int] = (1, 5),
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
    metrics: Sequence[str] = ("sqeuclidean", "cosine"),
    normalizations: Sequence[str] = NORMALIZATIONS,
    classes: Sequence[Any] | None = None,
    center: ArrayLike | None = None,
    **options: Any,
) -> GridResult:
    """Compare metrics x normalisations x shots on the same N-way episodes.

    ``options`` go to :func:`evaluate_episodes` (``chunk_size``, ``device``, ``dtype``, ``ci``,
    ``progress``). See :class:`EpisodeSampler` for the sampling parameters.
    """
    if not shots:
        raise ValueError("shots is empty; give at least one shot count")
    sampler = _sampler(
        embeddings, labels, n_way=n_way, n_shot=max(shots), n_query=n_query,
        n_episodes=n_episodes, seed=seed, classes=classes,
    )  # fmt: skip
    return evaluate_episodes(
        embeddings,
        sampler,
        shots=shots,
        metrics=metrics,
        normalizations=normalizations,
        center=center,
        **options,
    )


def evaluate(
    embeddings: ArrayLike,
    labels: Sequence[Any] | np.ndarray,
    *,
    n_way: int | Literal["all"] = 5,
    n_shot: int | tuple[int, int] = 1,
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
    metric: str = "sqeuclidean",
    normalization: str = "none",
    classes: Sequence[Any] | None = None,
    center: ArrayLike | None = None,
    **options: Any,
) -> EvalResult:
    """Mean accuracy ± 95% CI of nearest-prototype classification over N-way K-shot episodes.

    Examples
    --------
    >>> result = evaluate(embeddings, labels, n_way=5, n_shot=1, n_episodes=1000)
    >>> print(result)  # doctest: +SKIP
    n_way=5, n_shot=1, ...: 93.42% ± 0.31 (95% CI, 1000 episodes)
    """
    sampler = _sampler(
        embeddings, labels, n_way=n_way, n_shot=n_shot, n_query=n_query,
        n_episodes=n_episodes, seed=seed, classes=classes,
    )  # fmt: skip
    return evaluate_episodes(
        embeddings,
        sampler,
        metrics=[metric],
        normalizations=[normalization],
        center=center,
        **options,
    ).results[0]


def _sampler(
    embeddings: ArrayLike, labels: Sequence[Any] | np.ndarray, **sampling: Any
) -> EpisodeSampler:
    """The episode sampler over ``labels``, once they are known to match the embeddings' rows."""
    sampler = EpisodeSampler(labels, **sampling)
    if len(embeddings) != len(labels):
        raise ValueError(f"embeddings have {len(embeddings)} rows but labels have {len(labels)}")
    return sampler
