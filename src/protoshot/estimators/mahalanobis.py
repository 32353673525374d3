"""``MahalanobisClassifier``: class means and one shared, shrunk covariance (LDA with shrinkage).

The evaluator's ``mahalanobis`` method on one episode: the user's shots. The covariance is
scaled to unit mean variance, so distances keep the scale of squared Euclidean ones and
probabilities use the same temperature as prototypes (squared Euclidean) do.
The shots are kept, so adding shots or classes and removing classes refit exactly; the
covariance is estimated from all of them (OAS by default: it needs only the scatter and the
count, so the refit is one ``D x D`` product and a Cholesky factorisation).
"""

from __future__ import annotations

import numpy as np
import torch

from protoshot._validation import check_choice
from protoshot.estimators._base import FewShotEstimator
from protoshot.maths.covariance import SHRINKAGES
from protoshot.maths.distances import default_temperature
from protoshot.methods.mahalanobis import fit_shared_covariance


class MahalanobisClassifier(FewShotEstimator):
    """Nearest class mean under a shared covariance shrunk toward a scaled identity.

    Parameters
    ----------
    normalization : {"none", "l2", "cl2n"}
    shrinkage : {"oas", "ledoit-wolf"}
    center, device
        As in :class:`PrototypeClassifier`.

    Attributes
    ----------
    covariance_ : float64 [n_features, n_features]
        The shrunk within-class covariance (of normalised embeddings), scaled to unit mean
        variance.
    shrinkage_ : float
        Its shrinkage toward ``mu I``.
    temperature_ : float
        The softmax temperature of ``predict_proba``: the one that makes the shots' own
        cross-validated probabilities honest (least NLL), refitted on every update; with one
        shot per class, a fixed default.
    """

    method = "mahalanobis"
    _params = ("normalization", "shrinkage")

    def __init__(
        self,
        *,
        normalization: str = "cl2n",
        shrinkage: str = "oas",
        center: np.ndarray | None = None,
        device: str | None = None,
    ) -> None:
        self.normalization = normalization
        self.shrinkage = shrinkage
        self.center = center
        self.device = device

    def _refit(self) -> None:
        self._recenter()
        self._check_every_class_scored(0.0)
        fit = fit_shared_covariance(self.support_set(), self.shrinkage)
        self.covariance_ = fit.covariance[0].cpu().double().numpy()
        self.shrinkage_ = float(fit.shrinkage[0])
        self._fit = fit
        default = default_temperature("sqeuclidean", self.normalization)
        self.temperature_ = self._held_out_temperature(
            lambda support: fit_shared_covariance(support, self.shrinkage).scores, default
        )

    def _restore(self, state: dict[str, object], arrays: dict[str, np.ndarray]) -> None:
        self._refit()

    def _scores(self, query: torch.Tensor) -> torch.Tensor:
        return self._fit.scores(query[None])[0]

    def _temperature(self) -> float:
        return self.temperature_

    def _check_params(self) -> None:
        super()._check_params()
        check_choice("shrinkage", self.shrinkage, SHRINKAGES)
