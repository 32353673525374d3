"""``LinearClassifier``: a softmax head started from the prototypes and fitted to the shots.

The same fit as the evaluator's ``linear`` method (:func:`protoshot.methods.linear.fit_linear`),
on one episode: the user's shots. The shots themselves are kept, so adding shots or classes
refits the head exactly from all of them (milliseconds for hundreds of classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from protoshot.estimators._base import FewShotEstimator
from protoshot.maths.heads import DEFAULT_HEAD_TEMPERATURE, DEFAULT_PENALTY
from protoshot.methods.auto import PRIOR_WEIGHT
from protoshot.methods.linear import HeadSettings, fit_linear


class LinearClassifier(FewShotEstimator):
    """Softmax head over (frozen) embeddings, initialised from cosine prototypes.

    Parameters
    ----------
    normalization : {"none", "l2", "cl2n"}
        Applied to shots, names and queries (``"cl2n"`` centre as in :class:`PrototypeClassifier`).
    penalty : float
        Pull toward the prototype head (larger: closer to prototypes).
    temperature : float
        Temperature of the prototype head the fit starts from.
    prior_weight : float
        Weight of each class's name embedding as one more example (0 ignores names).
    max_iter : int
        L-BFGS iterations; a fit that does not converge keeps the prototype head and warns.
    center, device
        As in :class:`PrototypeClassifier`.

    Attributes
    ----------
    coef_, intercept_ : float [n_classes, n_features], [n_classes]
        The fitted head (on normalised embeddings).
    support_, support_codes_ : float32 [n_shots, n_features], int64 [n_shots]
        The shots it was fitted on (raw), and their class positions.
    converged_ : bool
    n_iter_ : int
        L-BFGS iterations of the last fit.
    """

    method = "linear"
    _params = ("normalization", "penalty", "temperature", "prior_weight", "max_iter")

    def __init__(
        self,
        *,
        normalization: str = "cl2n",
        penalty: float = DEFAULT_PENALTY,
        temperature: float = DEFAULT_HEAD_TEMPERATURE,
        prior_weight: float = PRIOR_WEIGHT,
        max_iter: int = 200,
        center: np.ndarray | None = None,
        device: str | None = None,
    ) -> None:
        self.normalization = normalization
        self.penalty = penalty
        self.temperature = temperature
        self.prior_weight = prior_weight
        self.max_iter = max_iter
        self.center = center
        self.device = device

    def _settings(self) -> HeadSettings:
        return HeadSettings(self.penalty, self.temperature, self.prior_weight, self.max_iter)

    def _refit(self) -> None:
        self._recenter()
        self._check_every_class_scored(self.prior_weight)
        # fitted in float32, the embeddings' own precision (twice as fast as float64 on a CPU);
        # the converged head is then used in the scoring precision
        head = fit_linear(self.support_set(torch.float32), self._settings())
        self.coef_ = head.weight[0].cpu().double().numpy()
        self.intercept_ = head.bias[0].cpu().double().numpy()
        self.converged_ = bool(head.converged[0])
        self.n_iter_ = max(head.n_iter, 1)

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef_, "intercept": self.intercept_}

    def _state(self) -> dict[str, Any]:
        return {"converged": self.converged_, "n_iter": self.n_iter_}

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        n, d = len(self.classes_), self.n_features_in_
        coef, intercept = arrays.get("coef"), arrays.get("intercept")
        if (
            coef is None
            or intercept is None
            or coef.shape != (n, d)
            or intercept.shape != (n,)
            or not (np.isfinite(coef).all() and np.isfinite(intercept).all())
        ):
            raise ValueError(
                f"the saved head is missing, not finite, or does not match the {n} classes of "
                f"{d} features in config.json"
            )
        self.coef_, self.intercept_ = coef.astype(np.float64), intercept.astype(np.float64)
        self.converged_ = bool(state.get("converged", True))
        self.n_iter_ = int(state.get("n_iter", 1))

    def _scores(self, query: torch.Tensor) -> torch.Tensor:
        weight = torch.as_tensor(self.coef_, device=query.device, dtype=query.dtype)
        bias = torch.as_tensor(self.intercept_, device=query.device, dtype=query.dtype)
        return torch.addmm(bias, query, weight.T)

    def _check_params(self) -> None:
        super()._check_params()
        self._settings()  # validates penalty, temperature, prior_weight, max_iter
