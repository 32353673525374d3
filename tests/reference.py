"""The naive tutorial implementation that the batched core must match.

One episode at a time, a Python loop over classes with a boolean mask and ``.mean()``,
``torch.cdist(...) ** 2`` and ``argmin``: slow and obviously right.
"""

from __future__ import annotations

import numpy as np
import torch


def naive_predict(
    support: torch.Tensor,
    support_labels: torch.Tensor,
    query: torch.Tensor,
    metric: str = "sqeuclidean",
    normalization: str = "none",
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """Predicted class positions of ``query`` [Q, D] given a labelled support [S, D]."""
    if normalization == "cl2n":
        c = support.mean(0) if center is None else center
        support, query = support - c, query - c
    if normalization in ("l2", "cl2n"):
        support = support / support.norm(dim=1, keepdim=True)
        query = query / query.norm(dim=1, keepdim=True)
    n_way = int(support_labels.max()) + 1
    protos = torch.stack([support[support_labels == c].mean(0) for c in range(n_way)])
    if metric == "sqeuclidean":
        return (torch.cdist(query, protos) ** 2).argmin(1)
    if metric == "euclidean":
        return torch.cdist(query, protos).argmin(1)
    if metric == "cosine":
        qn = query / query.norm(dim=1, keepdim=True)
        pn = protos / protos.norm(dim=1, keepdim=True)
        return (qn @ pn.T).argmax(1)
    return (query @ protos.T).argmax(1)


def naive_accuracies(
    x: np.ndarray,
    support: np.ndarray,
    query: np.ndarray,
    n_support: np.ndarray | None = None,
    **kwargs: object,
) -> np.ndarray:
    """Per-episode accuracy, one episode at a time; ``support`` [E, N, K], ``query`` [E, N, Q]."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    accs = []
    for e in range(support.shape[0]):
        n, k = support.shape[1:]
        shots = np.full(n, k) if n_support is None else n_support[e]
        idx = np.concatenate([support[e, c, : shots[c]] for c in range(n)])
        lab = torch.as_tensor(np.repeat(np.arange(n), shots))
        q_lab = torch.as_tensor(np.repeat(np.arange(n), query.shape[2]))
        pred = naive_predict(xt[idx], lab, xt[query[e].reshape(-1)], **kwargs)  # type: ignore[arg-type]
        accs.append(float((pred == q_lab).double().mean()))
    return np.array(accs)
