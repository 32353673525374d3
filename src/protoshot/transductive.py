"""Transductive prediction: a batch of unlabelled queries refines the classes it is classified by.

Not a scikit-learn estimator, on purpose: a query's answer depends on every other query of the
batch, so ``predict`` on a subset would not agree with ``predict`` on the whole. Use it for batch
work (``protoshot predict --transductive``), never for one request at a time; report its accuracy
apart from inductive results. ``"sinkhorn"`` assumes the batch holds the classes in equal shares.

    labels, proba = predict_transductive(x_support, y_support, x_queries, method="soft-kmeans")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from protoshot._validation import ArrayLike, as_float_tensor, check_choice, check_same_features
from protoshot.labels import encode_labels
from protoshot.maths.normalize import NORMALIZATIONS
from protoshot.methods.support import rows_support
from protoshot.methods.transductive import REFINE, TRANSDUCTIVE


def refine(
    sums: torch.Tensor, counts: torch.Tensor, queries: torch.Tensor, method: str
) -> np.ndarray:
    """Probabilities ``[M, N]`` of normalised ``queries`` [M, D] given the normalised shots'
    class ``sums`` [N, D] and ``counts`` [N], refined by ``method``."""
    check_choice("transductive method", method, TRANSDUCTIVE)
    if method == "sinkhorn" and len(queries) < len(sums):
        raise ValueError(
            f"sinkhorn shares the batch equally among the classes: {len(queries)} inputs cannot "
            f"cover {len(sums)} classes (use soft-kmeans, or a larger batch)"
        )
    scores = REFINE[method](sums[None], counts[None], queries[None])[0]
    proba = torch.softmax(scores, -1)  # logits: soft k-means' or Sinkhorn's log plan
    return proba.cpu().numpy()


def predict_transductive(
    support: ArrayLike,
    support_labels: Sequence[Any] | np.ndarray,
    queries: ArrayLike,
    *,
    method: str = "soft-kmeans",
    normalization: str = "cl2n",
) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``[M]`` and class probabilities ``[M, n_classes]`` of ``queries``, all at once.

    CL2N centres on the mean of the shots. Classes are the sorted unique ``support_labels``.
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    x = as_float_tensor(support, "support", ndim=2, dtype=torch.float64)
    q = as_float_tensor(queries, "queries", ndim=2, dtype=torch.float64)
    check_same_features(x, q, "support", "queries")
    classes, codes = encode_labels(support_labels)
    if len(codes) != len(x):
        raise ValueError(f"got {len(x)} support embeddings but {len(codes)} labels")
    center = x.mean(0) if normalization == "cl2n" else None
    shots = rows_support(
        x, torch.from_numpy(codes), len(classes), normalization=normalization, center=center
    )
    proba = refine(shots.sums()[0], shots.counts()[0], shots.normalize(q[None])[0], method)
    return classes[proba.argmax(1)], proba
