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


def naive_named_prototypes(
    support: torch.Tensor,
    support_labels: torch.Tensor,
    names: torch.Tensor,
    prior_weight: float,
    normalization: str = "none",
    center: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prototypes ``[N, D]`` with each class's name counted as ``prior_weight`` shots, one class
    at a time, and the centre used (support mean; the names' mean with no support)."""
    if normalization == "cl2n" and center is None:
        center = support.mean(0) if len(support) else names.mean(0)
    c = center if normalization == "cl2n" else None

    def norm(v: torch.Tensor) -> torch.Tensor:
        if normalization == "none":
            return v
        v = v - c if c is not None else v
        return v / v.norm(dim=-1, keepdim=True)

    s, n = norm(support), norm(names)
    protos = []
    for k in range(len(names)):
        mine = s[support_labels == k]
        protos.append((mine.sum(0) + prior_weight * n[k]) / (len(mine) + prior_weight))
    return torch.stack(protos), c


def naive_head(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    w0: np.ndarray,
    b0: np.ndarray,
    penalty: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One episode's head by scipy's L-BFGS-B to tight tolerance: the weighted sum of
    cross-entropies plus ``penalty / 2 * |(W, b) - (W0, b0)|^2``, written out by hand."""
    from scipy.optimize import minimize

    n, d = w0.shape
    w = weight
    onehot = np.eye(n)[y]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        wt, bt = theta[: n * d].reshape(n, d), theta[n * d :]
        logits = x @ wt.T + bt
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        ce = -(w * np.log(p[np.arange(len(y)), y])).sum()
        pull = ((wt - w0) ** 2).sum() + ((bt - b0) ** 2).sum()
        g = (p - onehot) * w[:, None]
        grad_w = g.T @ x + penalty * (wt - w0)
        grad_b = g.sum(0) + penalty * (bt - b0)
        return ce + 0.5 * penalty * pull, np.concatenate([grad_w.ravel(), grad_b])

    theta0 = np.concatenate([w0.ravel(), b0])
    res = minimize(
        objective,
        theta0,
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 0, "maxiter": 5000},
    )
    return res.x[: n * d].reshape(n, d), res.x[n * d :]


def naive_soft_kmeans(
    support: np.ndarray, labels: np.ndarray, queries: np.ndarray, steps: int, beta: float
) -> np.ndarray:
    """Soft k-means refinement of one episode, a class at a time (Ren et al. 2018)."""
    n = int(labels.max()) + 1
    protos = np.stack([support[labels == c].mean(0) for c in range(n)])
    for _ in range(steps):
        d = ((queries[:, None] - protos[None]) ** 2).sum(-1)
        z = np.exp(-beta * d - (-beta * d).max(1, keepdims=True))
        z /= z.sum(1, keepdims=True)
        protos = np.stack(
            [
                (support[labels == c].sum(0) + (z[:, c : c + 1] * queries).sum(0))
                / ((labels == c).sum() + z[:, c].sum())
                for c in range(n)
            ]
        )
    return -((queries[:, None] - protos[None]) ** 2).sum(-1)


def naive_sinkhorn(cost_scores: np.ndarray, iterations: int) -> np.ndarray:
    """The balanced plan of one episode by alternating row and column scaling of ``exp``."""
    m, n = cost_scores.shape
    p = np.exp(cost_scores - cost_scores.max())
    for _ in range(iterations):
        p *= (m / n) / p.sum(0, keepdims=True)
        p /= p.sum(1, keepdims=True)
    return p
