"""N-way K-shot episode sampling as index arrays, reproducible from a seed.

Episodes are drawn in fixed-size blocks, block ``b`` from ``numpy.random.default_rng([seed, b])``,
so the same seed gives the same episodes on any machine, whatever chunk size a consumer uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from protoshot._validation import positive_int
from protoshot.labels import encode_labels

_BLOCK_KEYS = 1 << 22  # random keys drawn per block: bounds the sampler's memory


@dataclass(frozen=True)
class Episodes:
    """Index arrays of ``E`` episodes into an embedding table.

    Attributes
    ----------
    support : int64 [E, N, K]
        Support sample indices, class by class; ``K`` is the largest shot count.
    query : int64 [E, N, Q]
        Query sample indices; the true class of ``query[e, n, :]`` is way ``n``.
    ways : int64 [E, N]
        Class position (into the sampler's ``classes_``) of each way.
    n_support : int64 [E, N] or None
        Shots used per class when supports are unbalanced (the first ``n_support`` of ``K``).
    """

    support: np.ndarray
    query: np.ndarray
    ways: np.ndarray
    n_support: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.support.shape[0])

    def __getitem__(self, item: slice) -> Episodes:
        return Episodes(
            self.support[item],
            self.query[item],
            self.ways[item],
            None if self.n_support is None else self.n_support[item],
        )

    @property
    def n_way(self) -> int:
        return int(self.support.shape[1])

    @property
    def n_shot(self) -> int:
        return int(self.support.shape[2])

    @property
    def n_query(self) -> int:
        return int(self.query.shape[2])

    @staticmethod
    def concatenate(parts: Sequence[Episodes]) -> Episodes:
        """Join blocks of episodes along the episode axis."""
        unbalanced = parts[0].n_support is not None
        return Episodes(
            np.concatenate([p.support for p in parts]),
            np.concatenate([p.query for p in parts]),
            np.concatenate([p.ways for p in parts]),
            np.concatenate([p.n_support for p in parts]) if unbalanced else None,
        )


class EpisodeSampler:
    """Draw N-way K-shot Q-query episodes over a vector of labels.

    Parameters
    ----------
    labels : sequence [n_samples]
        Label of each sample (any hashable values of one type).
    n_way : int or "all"
        Classes per episode; ``"all"`` uses every available class.
    n_shot : int or (int, int)
        Support shots per class; a ``(low, high)`` range (inclusive) draws each class's shots
        uniformly, giving unbalanced supports.
    n_query : int
        Query samples per class, disjoint from the support.
    n_episodes : int
    seed : int
    classes : sequence, optional
        Restrict episodes to these label values (e.g. the novel classes of a split).

    Raises
    ------
    ValueError
        Up front, naming the first class with fewer than ``max shots + n_query`` samples.
    """

    def __init__(
        self,
        labels: Sequence[Any] | np.ndarray,
        *,
        n_way: int | Literal["all"] = 5,
        n_shot: int | tuple[int, int] = 1,
        n_query: int = 15,
        n_episodes: int = 600,
        seed: int = 0,
        classes: Sequence[Any] | np.ndarray | None = None,
    ) -> None:
        all_classes, codes = encode_labels(labels)
        pool = np.arange(len(all_classes)) if classes is None else _positions(all_classes, classes)
        self.classes_ = all_classes[pool]
        self.shot_range = _shot_range(n_shot)
        self.n_query = positive_int(n_query, "n_query")
        self.n_episodes = positive_int(n_episodes, "n_episodes")
        self.seed = int(seed)
        self.n_way = len(pool) if n_way == "all" else positive_int(n_way, "n_way")
        if self.n_way < 2:
            raise ValueError(f"n_way must be at least 2, got {n_way}")
        if self.n_way > len(pool):
            raise ValueError(f"n_way={self.n_way} but only {len(pool)} classes are available")
        self._members, self._sizes = _class_members(codes, pool)
        need = self.shot_range[1] + self.n_query
        short = np.flatnonzero(self._sizes < need)
        if short.size:
            c = short[0]
            raise ValueError(
                f"class {self.classes_[c].item()!r} has {self._sizes[c]} samples, but n_shot + n_query "
                f"= {need} are needed ({short.size} classes are short)"
            )
        width = self.n_way * self._members.shape[1]
        self.block_size = int(max(1, min(1024, _BLOCK_KEYS // width)))

    def __len__(self) -> int:
        return self.n_episodes

    def __iter__(self) -> Iterator[Episodes]:
        """Yield the episodes in blocks of ``block_size`` (bounded memory)."""
        for block, start in enumerate(range(0, self.n_episodes, self.block_size)):
            size = min(self.block_size, self.n_episodes - start)
            yield self._block(np.random.default_rng([self.seed, block]), size)

    def sample(self) -> Episodes:
        """All episodes at once."""
        return Episodes.concatenate(list(self))

    def _block(self, rng: np.random.Generator, size: int) -> Episodes:
        n_classes, width = self._members.shape
        if self.n_way == n_classes:
            ways = np.broadcast_to(np.arange(n_classes), (size, n_classes)).copy()
        else:
            ways = np.argsort(rng.random((size, n_classes)), axis=1)[:, : self.n_way]
        # a random order of each chosen class's members; padding slots sort last
        keys = rng.random((size, self.n_way, width))
        keys[np.arange(width) >= self._sizes[ways][..., None]] = np.inf
        order = np.argsort(keys, axis=2)[..., : self.shot_range[1] + self.n_query]
        picked = self._members[ways[..., None], order]
        k_max = self.shot_range[1]
        low, high = self.shot_range
        n_support = None if low == high else rng.integers(low, high + 1, size=(size, self.n_way))
        return Episodes(picked[..., :k_max], picked[..., k_max:], ways, n_support)


def _shot_range(n_shot: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(n_shot, tuple):
        low, high = (positive_int(v, "n_shot") for v in n_shot)
        if low > high:
            raise ValueError(f"n_shot range must be (low, high) with low <= high, got {n_shot}")
        return low, high
    k = positive_int(n_shot, "n_shot")
    return k, k


def _positions(all_classes: np.ndarray, wanted: Sequence[Any] | np.ndarray) -> np.ndarray:
    wanted_arr = np.unique(np.asarray(wanted))
    pos = np.searchsorted(all_classes, wanted_arr)
    pos = np.clip(pos, 0, len(all_classes) - 1)
    missing = wanted_arr[all_classes[pos] != wanted_arr]
    if missing.size:
        raise ValueError(f"classes not found in labels: {missing[:5].tolist()}")
    if len(pos) == 0:
        raise ValueError("classes is empty")
    return pos


def _class_members(codes: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices of each pooled class as a ``[C, max_size]`` matrix (padded with 0), and sizes."""
    order = np.argsort(codes, kind="stable")
    sizes_all = np.bincount(codes, minlength=int(pool.max()) + 1)
    starts = np.concatenate([[0], np.cumsum(sizes_all)[:-1]])
    sizes = sizes_all[pool]
    width = int(sizes.max())
    offsets = np.arange(width)
    valid = offsets < sizes[:, None]
    flat = np.where(valid, starts[pool][:, None] + offsets, 0)
    return np.where(valid, order[flat], 0), sizes


def split_classes(
    classes: Sequence[Any] | np.ndarray,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    *,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Split class labels into disjoint ``base`` / ``validation`` / ``novel`` sets by seed."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    unique = np.unique(np.asarray(classes))
    shuffled = np.random.default_rng(seed).permutation(unique)
    n_base = round(fractions[0] * len(unique))
    n_val = round(fractions[1] * len(unique))
    return {
        "base": np.sort(shuffled[:n_base]),
        "validation": np.sort(shuffled[n_base : n_base + n_val]),
        "novel": np.sort(shuffled[n_base + n_val :]),
    }
