"""``AutoClassifier``: picks prototypes or a fitted head (named when classes have names) per fit.

Selection is the evaluator's ``auto`` (:func:`protoshot.methods.auto.choose`) on one episode:
cross-validation on the user's own shots, or the closed-form choice with one shot per class.
The shots are kept, so every update re-selects and refits exactly; a saved model keeps the
chosen estimator's fitted state too, so loading one refits nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from protoshot.estimators._base import FewShotEstimator
from protoshot.estimators.linear import LinearClassifier
from protoshot.estimators.prototypes import PrototypeClassifier
from protoshot.methods.auto import Candidate, candidates, choose

#: Prefix of the chosen estimator's own arrays in a saved model.
CHOSEN = "chosen."
Saved = tuple[dict[str, Any], dict[str, np.ndarray]]  # a saved estimator's state and arrays


class AutoClassifier(FewShotEstimator):
    """The method cross-validation on the shots favours, fitted on all of them.

    Parameters
    ----------
    normalization : {"none", "l2", "cl2n"}
    center, device
        As in :class:`PrototypeClassifier`.

    Attributes
    ----------
    estimator_ : PrototypeClassifier or LinearClassifier
        The chosen method, fitted on every shot.
    chosen_ : str
        Its name (``"named-linear"``, ``"prototypes"``, ...).
    selection_ : dict
        How it was chosen: ``{"how": "cross-validation" | "closed form", "held_out_accuracy":
        {candidate: fraction}}``.
    """

    method = "auto"
    _params = ("normalization",)

    def __init__(
        self,
        *,
        normalization: str = "cl2n",
        center: np.ndarray | None = None,
        device: str | None = None,
    ) -> None:
        self.normalization = normalization
        self.center = center
        self.device = device

    def _options(self) -> list[Candidate]:
        return candidates(named=bool(self.named_.any()))

    def _refit(self) -> None:
        self._recenter()
        options = self._options()
        self._check_every_class_scored(options[0].prior_weight)
        choice = choose(self.support_set(), options)
        accuracy = {}
        if choice.held_out_accuracy is not None:
            held = choice.held_out_accuracy[:, 0].tolist()
            accuracy = {o.name: float(a) for o, a in zip(options, held, strict=True)}
        self.selection_ = {"how": choice.how, "held_out_accuracy": accuracy}
        self._fit_chosen(options[int(choice.index[0])])

    def _fit_chosen(self, option: Candidate, saved: Saved | None = None) -> None:
        """Make ``option`` the estimator: fitted on the shots, or restored from ``saved``."""
        common: dict[str, Any] = {
            "normalization": self.normalization, "center": self.center_, "device": self.device,
            "prior_weight": option.prior_weight,
        }  # fmt: skip
        estimator: PrototypeClassifier | LinearClassifier = (
            PrototypeClassifier("sqeuclidean", **common)
            if option.kind == "prototypes"
            else LinearClassifier(**common)
        )
        estimator._adopt(self, saved)
        self.estimator_, self.chosen_ = estimator, option.name

    def _scores(self, query: torch.Tensor) -> torch.Tensor:
        return self.estimator_._scores(query)

    def _temperature(self) -> float:
        return self.estimator_._temperature()

    def _state(self) -> dict[str, Any]:
        chosen_state = self.estimator_._state()
        return {"chosen": self.chosen_, "selection": self.selection_, "chosen_state": chosen_state}

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {CHOSEN + name: a for name, a in self.estimator_._extra_arrays().items()}

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        by_name = {option.name: option for option in self._options()}
        if state.get("chosen") not in by_name:
            raise ValueError(f"unknown auto choice {state.get('chosen')!r} in config.json")
        self.selection_ = dict(state.get("selection") or {})
        saved = None  # folders written before the chosen state was kept: refitted
        if isinstance(state.get("chosen_state"), dict):
            own = {k.removeprefix(CHOSEN): a for k, a in arrays.items() if k.startswith(CHOSEN)}
            saved = (state["chosen_state"], own)
        self._fit_chosen(by_name[state["chosen"]], saved)
