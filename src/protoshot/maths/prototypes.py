"""Class prototypes: the mean of each class's support embeddings (Snell et al. 2017)."""

from __future__ import annotations

import numpy as np
import torch

from protoshot._validation import ArrayLike, as_float_tensor
from protoshot.maths.shots import shot_mask


def episode_prototypes(
    support: torch.Tensor, n_support: torch.Tensor | None = None
) -> torch.Tensor:
    """Unchecked core: prototypes ``[E, N, D]`` from support ``[E, N, K, D]``.

    Balanced supports take a reshape-mean; with ``n_support`` (int ``[E, N]``, each >= 1) only
    the first ``n_support[e, n]`` shots of each class are averaged (unbalanced supports).
    """
    if n_support is None:
        return support.mean(dim=2)
    weights = shot_mask(n_support, support.shape[2], support.dtype).unsqueeze(-1)
    return (support * weights).sum(dim=2) / n_support.unsqueeze(-1).to(support.dtype)


def class_sums_tensors(
    support: torch.Tensor, labels: torch.Tensor, n_way: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unchecked core of :func:`class_sums`: one-hot matmul, ``[E, S, D]`` -> ``[E, N, D]``, ``[E, N]``."""
    one_hot = torch.nn.functional.one_hot(labels.clamp_min(0), n_way).to(support.dtype)
    one_hot = one_hot * (labels >= 0).unsqueeze(-1).to(support.dtype)  # label -1 = padding
    sums = torch.bmm(one_hot.transpose(1, 2), support)
    return sums, one_hot.sum(dim=1).round().to(torch.int64)


def _as_labels(labels: ArrayLike, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    t = (
        labels.to(device)
        if isinstance(labels, torch.Tensor)
        else torch.tensor(np.asarray(labels), device=device)
    )
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"labels must be integer class positions, got dtype {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(
            f"labels must have shape {shape} to match the support, got {tuple(t.shape)}"
        )
    return t.to(torch.int64)


def class_sums(
    support: ArrayLike, labels: ArrayLike, n_way: int | None = None
) -> tuple[ArrayLike, ArrayLike]:
    """Per-class sums and counts of support embeddings with any number of shots per class.

    Sums and counts (not means) are what a growing classifier keeps: new shots and new classes
    are then exact, cheap updates.

    Parameters
    ----------
    support : float [E, S, D] or [S, D]
        Support embeddings, with or without a leading episode axis.
    labels : int [E, S] or [S]
        Class position of each support sample in ``0 .. n_way - 1``; ``-1`` marks padding.
    n_way : int, optional
        Number of classes; by default ``labels.max() + 1``.

    Returns
    -------
    sums : float [E, N, D] (or [N, D])
    counts : int [E, N] (or [N])
    """
    s = as_float_tensor(support, "support", ndim=(2, 3))
    squeeze = s.ndim == 2
    s3 = s.unsqueeze(0) if squeeze else s
    lab = _as_labels(labels, tuple(s.shape[:-1]), s.device)
    lab = lab.unsqueeze(0) if squeeze else lab
    if int(lab.min()) < -1:
        raise ValueError(
            f"labels must be class positions >= 0 (or -1 for padding), got {int(lab.min())}"
        )
    n = int(lab.max()) + 1 if n_way is None else n_way
    if int(lab.max()) >= n:
        raise ValueError(f"label {int(lab.max())} is out of range for n_way={n}")
    sums, counts = class_sums_tensors(s3, lab, n)
    if squeeze:
        sums, counts = sums[0], counts[0]
    if isinstance(support, torch.Tensor):
        return sums, counts
    return sums.numpy(), counts.numpy()


def prototypes(
    support: ArrayLike, labels: ArrayLike | None = None, *, n_way: int | None = None
) -> ArrayLike:
    """Class prototypes: the mean support embedding of each class.

    Parameters
    ----------
    support : float [E, N, K, D] or [N, K, D] without ``labels``; [E, S, D] or [S, D] with them
        Balanced supports are laid out class by class (``K`` shots of each of ``N`` classes).
    labels : int [E, S] or [S], optional
        Class positions of an unbalanced support (any number of shots per class); ``-1`` = padding.
    n_way : int, optional
        Number of classes when ``labels`` is given; by default ``labels.max() + 1``.

    Returns
    -------
    float [E, N, D] or [N, D], the same kind (numpy or torch) as ``support``.

    Raises
    ------
    ValueError
        If a class has no shots (its prototype would be undefined) or the support is empty.
    """
    if labels is None:
        s = as_float_tensor(support, "support", ndim=(3, 4))
        protos = s.mean(dim=-2)
    else:
        sums, counts = class_sums(support, labels, n_way)
        sums_t, counts_t = torch.as_tensor(sums), torch.as_tensor(counts)
        if bool((counts_t == 0).any()):
            empty = torch.nonzero(counts_t == 0)[0].tolist()
            raise ValueError(
                f"class {empty[-1]} has no shots (at index {empty}); every class needs one"
            )
        protos = sums_t / counts_t.unsqueeze(-1).to(sums_t.dtype)
    return protos if isinstance(support, torch.Tensor) else protos.numpy()


def prototypes_with_prior(
    sums: torch.Tensor, counts: torch.Tensor, prior: torch.Tensor, weight: float | torch.Tensor
) -> torch.Tensor:
    """Prototypes that count a prior vector (e.g. the class name's embedding) as ``weight`` shots.

    ``(sums + weight * prior) / (counts + weight)`` for per-class ``sums`` [..., N, D], shot
    ``counts`` [..., N], ``prior`` [..., N, D] and ``weight`` (a number, or per class [..., N]);
    with ``weight > 0`` a class with no shots is its prior alone (zero-shot), with ``weight = 0``
    the plain mean.
    """
    w = torch.as_tensor(weight, dtype=sums.dtype, device=sums.device)
    w = w.unsqueeze(-1) if w.dim() else w
    total = counts.to(sums.dtype).unsqueeze(-1) + w
    return (sums + w * prior) / total.clamp_min(torch.finfo(sums.dtype).tiny)
