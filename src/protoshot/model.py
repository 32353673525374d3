"""``FewShotModel``: a frozen embedder and an estimator (:mod:`protoshot.estimators`), saved
and served together.

A model folder (written through :mod:`protoshot.store`) holds the estimator, its method, and the
embedder's spec and fingerprint in its metadata, so loading re-creates the embedder and refuses
one whose fingerprint differs (other weights would give vectors the classes do not match). With
a text embedder, class names (``card_arrival`` -> "card arrival") or given descriptions are
embedded too, for the methods that use them as a prior. An optional rejection rule
(:mod:`protoshot.openset`) answers ``None`` ("unknown") when no class is similar enough.

The CLI and the service change a model only through this module (``add_examples``,
``add_embeddings``, ``add_descriptions``, ``remove_classes``, ``calibrate``, ``copy``;
:func:`remove_saved_classes` for a saved folder, which needs no embedder), never through the
estimator.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from protoshot import store
from protoshot.cache import CacheArg
from protoshot.embedders import Embedder
from protoshot.embedders._registry import MODALITIES
from protoshot.estimators import AutoClassifier, FewShotEstimator, load_estimator
from protoshot.index import IndexedClasses, PrototypeIndex
from protoshot.labels import as_label_array, labels_like
from protoshot.openset import ACCEPT, Rejection, from_held_out, from_shots, from_traffic
from protoshot.pipeline import class_name_embeddings, embedder_for
from protoshot.scoring import ScoreReport
from protoshot.store import Change

UNKNOWN = None


@dataclass(frozen=True)
class Prediction:
    """One input's answer: its label (``None`` if rejected as unknown) and the top classes."""

    label: Any
    probability: float
    top_k: list[tuple[Any, float]]
    rejected: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["top_k"] = [{"label": label, "probability": p} for label, p in self.top_k]
        return out


@dataclass(frozen=True)
class Calibration:
    """A rejection threshold, how it was chosen, and the rates it gives on held-out data when
    some was given (``None`` otherwise)."""

    threshold: float
    rule: str
    false_accept_rate: float | None = None
    known_accept_rate: float | None = None
    known_accuracy: float | None = None
    n_known: int = 0
    n_unknown: int = 0


class FewShotModel:
    """Classify raw items (texts, images) by the nearest prototype of their frozen embeddings.

    Parameters
    ----------
    embedder : Embedder
        The frozen model; its fingerprint is saved with the classes.
    classifier : estimator of :mod:`protoshot.estimators`, optional
        Fitted or not; ``fit`` and ``add_examples`` fill it. By default :class:`AutoClassifier`.
    rejection : Rejection, optional
        Answer "unknown" (label ``None``) when no class is similar enough; set by the
        ``calibrate*`` methods (:mod:`protoshot.openset`).
    cache : CacheArg
        Where embeddings are cached (default: the user's cache).
    batch_size : int
    """

    def __init__(
        self,
        embedder: Embedder,
        classifier: FewShotEstimator | None = None,
        *,
        rejection: Rejection | None = None,
        cache: CacheArg = True,
        batch_size: int = 32,
        index: IndexedClasses | None = None,
    ) -> None:
        self.embedder = embedder
        self.classifier = classifier if classifier is not None else AutoClassifier()
        self.rejection = rejection
        self.cache = cache
        self.batch_size = batch_size
        self.index = index
        self._unindexed: list[Any] = []  # classes changed since the index last saw them

    def use_index(
        self, kind: str = "auto", *, n_candidates: int = 32, nprobe: int | None = None
    ) -> FewShotModel:
        """Answer :meth:`predict` through a prototype index (:mod:`protoshot.index`, faiss):
        ``n_candidates`` classes per query are retrieved and scored exactly, and probabilities
        are over those. For 10^5 classes and more; kept in step with every update."""
        index = IndexedClasses(PrototypeIndex(kind, nprobe=nprobe), n_candidates)
        self.index = index.build(self.classifier)
        self._unindexed = []
        return self

    def _reindex(self, labels: Sequence[Any]) -> None:
        """Note classes whose prototypes changed: the index (shared by the copies of this model)
        takes them when this model is committed or first answers, never before, so a copy whose
        update fails leaves the index as it was."""
        if self.index is not None:
            self._unindexed = [*self._unindexed, *labels]

    def _bring_index_up_to_date(self) -> None:
        if self.index is not None and self._unindexed:
            self.index.refresh(self.classifier, self._unindexed)
            self._unindexed = []

    # ------------------------------------------------------------------ embeddings
    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Embed items through the cache: float32 [n, dim]."""
        from protoshot.embedders import embed

        if isinstance(items, (str, bytes)):
            raise TypeError(f"give a list of items; one text is [{items!r:.40}]")
        if len(items) == 0:
            raise ValueError("no items given: at least one is needed")
        return embed(
            list(items), self.embedder, cache=self.cache, batch_size=self.batch_size, progress=False
        )

    # ------------------------------------------------------------------ growing
    def fit(
        self,
        items: Sequence[Any],
        labels: Sequence[Any] | np.ndarray,
        *,
        class_descriptions: Mapping[Any, str] | None = None,
    ) -> FewShotModel:
        """Fit on labelled support items (replacing what there was).

        With a text embedder each class's name is embedded as a prior (``card_arrival`` ->
        "card arrival"), or its entry of ``class_descriptions`` where given.
        """
        return self.fit_embeddings(
            self.embed(_shots(items)), _labels(labels, len(items)),
            class_descriptions=class_descriptions,
        )  # fmt: skip

    def fit_embeddings(
        self,
        vectors: np.ndarray,
        labels: Sequence[Any] | np.ndarray,
        *,
        class_descriptions: Mapping[Any, str] | None = None,
    ) -> FewShotModel:
        """:meth:`fit` on items already embedded by this model's embedder."""
        y = _labels(labels, len(vectors))
        if class_descriptions:
            _check_described(class_descriptions, np.unique(y))
        names = self._name_embeddings(np.unique(y).tolist(), class_descriptions or {})
        self.classifier.fit(vectors, y, names)
        return self

    def add_examples(self, items: Sequence[Any], labels: Any) -> FewShotModel:
        """Add shots to existing classes or create new classes: an exact update.

        ``labels``: one per item, or one label for them all (``add_examples(texts, "refund")``).
        """
        return self.add_embeddings(self.embed(_shots(items)), labels)

    def add_embeddings(self, vectors: np.ndarray, labels: Any) -> FewShotModel:
        """:meth:`add_examples` for items already embedded by this model's embedder."""
        y = _labels(labels, len(vectors))
        y = np.asarray(self.as_class_values(list(y))) if self.classes else y
        known = set(self.classes)
        new = [c for c in np.unique(y).tolist() if c not in known]
        names = self._name_embeddings(new, {}, warn=False) if self.classes else None
        self.classifier.partial_fit(vectors, y, class_embeddings=names)
        self._reindex(np.unique(y).tolist())
        return self

    def add_descriptions(self, descriptions: Mapping[Any, str]) -> FewShotModel:
        """Describe classes in words (embedded with the model): a new class needs no shots when
        the method uses names (zero-shot); an existing one gets the description as its prior."""
        labels = self.as_class_values(list(descriptions))
        texts = dict(zip(labels, descriptions.values(), strict=True))
        names = self._name_embeddings(labels, texts, warn=False)
        if not names:
            raise ValueError("no description gave text to embed (empty, or digits only)")
        self.classifier.add_class_embeddings(names)
        self._reindex(list(names))
        return self

    def _name_embeddings(
        self, classes: Sequence[Any], descriptions: Mapping[Any, str], *, warn: bool = True
    ) -> dict[Any, np.ndarray] | None:
        """Embeddings of the classes' descriptions, else their readable names (text models)."""
        if self.embedder.modality != "text" or not classes:
            return None
        names, skipped = class_name_embeddings(
            classes, self.embedder, descriptions=descriptions, cache=self.cache,
            batch_size=self.batch_size,
        )  # fmt: skip
        if skipped and warn:
            warnings.warn(
                f"{len(skipped)} classes have no name to embed (integer codes, digits or empty: "
                f"{', '.join(map(str, skipped[:5]))}); they go on without the name prior",
                UserWarning,
                stacklevel=3,
            )
        return names or None

    def remove_classes(self, labels: Sequence[Any]) -> FewShotModel:
        """Forget classes; raises ValueError for an unknown class or when none would remain."""
        labels = self.as_class_values(labels)
        self.classifier.remove_classes(labels)
        self._reindex(labels)
        return self

    def copy(self) -> FewShotModel:
        """An independent copy (the embedder, which never changes, is shared).

        Cheap: the estimator's arrays are shared, since every update replaces the arrays it
        changes rather than writing into them.
        """
        twin = FewShotModel(
            self.embedder,
            copy.copy(self.classifier),
            rejection=self.rejection,
            cache=self.cache,
            batch_size=self.batch_size,
            index=self.index,  # shared: kept in step by whichever copy is committed
        )
        twin._unindexed = self._unindexed  # replaced, never written into
        return twin

    @property
    def classes(self) -> list[Any]:
        """The class labels (sorted); shot counts are in :meth:`class_counts`."""
        return self.classifier.classes_.tolist() if hasattr(self.classifier, "classes_") else []

    def class_counts(self) -> dict[Any, int]:
        """Shots per class (0 for a class known by its description alone)."""
        if not hasattr(self.classifier, "classes_"):
            return {}
        counts = self.classifier.shot_counts_.tolist()
        return dict(zip(self.classifier.classes_.tolist(), counts, strict=True))

    def class_updated(self) -> dict[Any, datetime | None]:
        """When each class last gained shots or a description (UTC; ``None`` for a class saved
        by a protoshot that did not record it)."""
        if not hasattr(self.classifier, "classes_"):
            return {}
        times = [
            datetime.fromtimestamp(t, timezone.utc) if t > 0 else None
            for t in self.classifier.updated_.tolist()
        ]
        return dict(zip(self.classifier.classes_.tolist(), times, strict=True))

    @property
    def method(self) -> str:
        """The estimator's method; for ``auto``, what it chose (``"auto: named-linear"``)."""
        chosen = getattr(self.classifier, "chosen_", None)
        return self.classifier.method + (f": {chosen}" if chosen else "")

    # ------------------------------------------------------------------ inference
    def predict_embeddings(self, vectors: np.ndarray, *, top_k: int = 1) -> list[Prediction]:
        """Predictions for already embedded items (the rejection rule applied)."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if self.index is None:
            positions, proba = _every_class(self.classifier.predict_proba(vectors))
        else:
            self._bring_index_up_to_date()
            positions, proba = self.index.candidates(self.classifier, vectors)
        return _predictions(
            positions, proba, self.classifier.classes_, top_k, self._rejected(vectors)
        )

    def _rejected(self, vectors: np.ndarray) -> np.ndarray | None:
        """Which inputs the rejection rule answers "unknown" (``None`` without a rule)."""
        return None if self.rejection is None else self.rejection.rejected(self.classifier, vectors)

    @property
    def threshold(self) -> float | None:
        """The rejection threshold on the best class similarity (``None``: never reject)."""
        return None if self.rejection is None else self.rejection.threshold

    def predict(self, items: Sequence[Any], *, top_k: int = 1) -> list[Prediction]:
        """Embed (cached) and classify items."""
        return self.predict_embeddings(self.embed(items), top_k=top_k)

    def predict_proba(self, items: Sequence[Any]) -> np.ndarray:
        """Class probabilities ``[n, n_classes]``, columns in the order of :attr:`classes`
        (before any rejection)."""
        return self.classifier.predict_proba(self.embed(items))

    def score(self, items: Sequence[Any], labels: Sequence[Any] | np.ndarray) -> float:
        """Accuracy on labelled items (as scikit-learn's ``score``; a rejected item is wrong)."""
        return self.score_report(items, labels).accuracy

    def score_report(
        self, items: Sequence[Any], labels: Sequence[Any] | np.ndarray, *, unknown_label: Any = None
    ) -> ScoreReport:
        """Accuracy with its interval, macro-F1, per-class scores, NLL, ECE and the confusion
        matrix on labelled items (:mod:`protoshot.scoring`).

        Items labelled ``unknown_label`` are out of scope: right when rejected.
        """
        return self.score_report_embeddings(self.embed(items), labels, unknown_label=unknown_label)

    def score_report_embeddings(
        self, vectors: np.ndarray, labels: Sequence[Any] | np.ndarray, *, unknown_label: Any = None
    ) -> ScoreReport:
        """:meth:`score_report` for items already embedded by this model's embedder."""
        from protoshot.scoring import score_predictions

        y = _labels(labels, len(vectors)).tolist()
        outside = None if unknown_label is None else str(unknown_label)
        unknown = np.array([outside is not None and str(v) == outside for v in y])
        if outside is not None and not unknown.any():
            warnings.warn(f"no item is labelled {unknown_label!r}", UserWarning, stacklevel=2)
        true = np.empty(len(y), dtype=object)
        true[:] = self._as_classes(y)
        proba = self.classifier.predict_proba(vectors)
        return score_predictions(
            true, proba, self.classifier.classes_, rejected=self._rejected(vectors),
            unknown=unknown,
        )  # fmt: skip

    def predict_transductive(
        self, items: Sequence[Any], *, method: str = "soft-kmeans", top_k: int = 1
    ) -> list[Prediction]:
        """Classify a batch of items together: the batch refines the classes first
        (:mod:`protoshot.transductive`). Each answer depends on the whole batch; the rejection
        rule, a similarity to the shots, applies as it does to :meth:`predict`."""
        return self.predict_transductive_embeddings(self.embed(items), method=method, top_k=top_k)

    def predict_transductive_embeddings(
        self, vectors: np.ndarray, *, method: str = "soft-kmeans", top_k: int = 1
    ) -> list[Prediction]:
        """:meth:`predict_transductive` for items already embedded by this model's embedder."""
        from protoshot.transductive import refine

        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        sums, counts = self.classifier.class_sums()
        proba = refine(sums, counts, self.classifier.normalized(vectors), method)
        return _predictions(
            *_every_class(proba), self.classifier.classes_, top_k, self._rejected(vectors)
        )

    # ------------------------------------------------------------------ open set
    def calibrate_on_shots(self, *, accept: float = ACCEPT) -> Calibration:
        """Set the rejection threshold from the model's own shots alone: it accepts ``accept``
        of them, each scored with itself left out (no out-of-scope data needed)."""
        self.rejection = from_shots(self.classifier, accept=accept)
        return Calibration(self.rejection.threshold, self.rejection.rule)

    def calibrate_on_traffic(self, items: Sequence[Any], *, unknown_rate: float) -> Calibration:
        """Set the threshold that rejects ``unknown_rate`` of unlabelled traffic ``items`` (the
        share of out-of-scope inputs, known from logs)."""
        return self.calibrate_on_traffic_embeddings(self.embed(items), unknown_rate=unknown_rate)

    def calibrate_on_traffic_embeddings(
        self, vectors: np.ndarray, *, unknown_rate: float
    ) -> Calibration:
        """:meth:`calibrate_on_traffic` for items already embedded by this model's embedder."""
        self.rejection = from_traffic(self.classifier, vectors, unknown_rate=unknown_rate)
        return Calibration(self.rejection.threshold, self.rejection.rule)

    def calibrate(
        self, items: Sequence[Any], labels: Sequence[Any], *, false_accept_rate: float = 0.05
    ) -> Calibration:
        """Set the rejection threshold from held-out labelled items.

        Items whose label is not one of the model's classes are the "unknowns": the threshold
        is the lowest one that accepts at most ``false_accept_rate`` of them. The known items
        tell how many genuine inputs are then still accepted, and how accurately.
        """
        return self.calibrate_embeddings(
            self.embed(items), labels, false_accept_rate=false_accept_rate
        )

    def calibrate_embeddings(
        self, vectors: np.ndarray, labels: Sequence[Any], *, false_accept_rate: float = 0.05
    ) -> Calibration:
        """:meth:`calibrate` on already embedded items."""
        y = np.asarray(self._as_classes(_labels(labels, len(vectors))), dtype=object)
        known = np.isin(y, self.classifier.classes_)
        self.rejection = from_held_out(
            self.classifier, vectors, known, false_accept_rate=false_accept_rate
        )
        accepted = ~self.rejection.rejected(self.classifier, vectors)
        right = accepted & (self.classifier.predict(vectors) == y)
        return Calibration(
            self.rejection.threshold,
            self.rejection.rule,
            false_accept_rate=float(accepted[~known].mean()),
            known_accept_rate=float(accepted[known].mean()),
            known_accuracy=float(right[known].mean()),
            n_known=int(known.sum()),
            n_unknown=int((~known).sum()),
        )

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the whole model folder atomically (see :mod:`protoshot.store`)."""
        self.classifier.metadata_ = {**getattr(self.classifier, "metadata_", {}), **self._about()}
        return self.classifier.save(directory, overwrite=overwrite)

    def commit(self, directory: str | os.PathLike[str], *, compact: bool = True) -> Path:
        """Make the updates since the model was loaded from (or saved to) ``directory`` durable
        there, as one journal entry of their own size (see
        :meth:`~protoshot.estimators.FewShotEstimator.commit`); a new threshold is one too.

        With ``compact``, a journal that has outgrown its snapshot is then folded into a new
        one (:meth:`save`); the service does that in the background instead.
        """
        kept = self.classifier.metadata_
        changed = {key: value for key, value in self._about().items() if kept.get(key) != value}
        if changed:
            self.classifier.update([Change("metadata", metadata=changed)])
        path = self.classifier.commit(directory)
        self._bring_index_up_to_date()
        if compact and self.needs_compaction(path):
            self.save(path, overwrite=True)
        return path

    def needs_compaction(self, directory: str | os.PathLike[str]) -> bool:
        """Whether the folder's journal has outgrown its snapshot: then :meth:`save` it whole."""
        position = getattr(self.classifier, "_position", None)
        return position is not None and store.needs_compaction(directory, position)

    def _about(self) -> dict[str, Any]:
        """What a model folder's metadata says of the embedder and the rejection rule."""
        return {
            "embedder": {
                "spec": self.embedder.spec,
                "fingerprint": self.embedder.fingerprint,
                "modality": self.embedder.modality,
                "dim": self.embedder.dim,
            },
            "rejection": None if self.rejection is None else self.rejection.to_dict(),
        }

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        device: str | None = None,
        cache: CacheArg = True,
        batch_size: int = 32,
        embedder: Embedder | None = None,
        allow_download: bool = False,
        deferred: bool = False,
    ) -> FewShotModel:
        """Load a model directory and re-create its embedder (or check the one given).

        A folder may come from anyone: the embedder it names is built only from what is on this
        machine (bundled models, local folders) unless ``allow_download`` (or the embedder is
        given): a folder never makes protoshot fetch code or weights from a hub by itself.
        With ``deferred`` the embedder is built only when an item is not in the cache (see
        :class:`~protoshot.embedders._deferred.DeferredEmbedder`): a command whose items are
        all cached starts without loading a model.
        """
        from protoshot.embedders._deferred import DeferredEmbedder, check_fingerprint

        classifier = load_estimator(directory, device=device)
        info = classifier.metadata_.get("embedder")
        if not isinstance(info, dict) or "spec" not in info:
            raise ValueError(
                f"{directory} holds a classifier but no embedder: it was not saved by FewShotModel"
            )
        if not isinstance(info["spec"], str) or info.get("dim") != classifier.n_features_in_:
            raise ValueError(
                f"{directory}: metadata.embedder must name a spec and the dimension "
                f"{classifier.n_features_in_}, got {info!r:.120}"
            )
        if embedder is None:
            from protoshot.embedders._registry import fetches_weights
            from protoshot.embedders.tuned import beside

            spec = beside(info["spec"], directory)
            if fetches_weights(spec) and not allow_download:
                raise ValueError(
                    f"{directory} names the embedder {spec!r}, which would be fetched "
                    f"from a model hub: pass --model {spec} (or --allow-download) if "
                    "you trust this folder"
                )
            if deferred and cache not in (None, False) and info.get("modality") in MODALITIES:
                embedder = DeferredEmbedder(
                    spec, str(info.get("fingerprint")), classifier.n_features_in_,
                    info["modality"], lambda: embedder_for(spec, device=device, cache=cache),
                    where=directory,
                )  # fmt: skip
            else:
                embedder = embedder_for(spec, device=device, cache=cache)
        check_fingerprint(embedder, info.get("fingerprint"), directory)
        rejection = _read_rejection(classifier.metadata_.get("rejection"), embedder.dim, directory)
        return cls(embedder, classifier, rejection=rejection, cache=cache, batch_size=batch_size)

    def _as_classes(self, labels: Sequence[Any] | np.ndarray) -> list[Any]:
        """Each label as a class of the model where it can be one (``"3"`` -> ``3``, ``3`` ->
        ``"3"``), others as given: held-out data may hold labels of no class."""
        return labels_like(list(labels), self.classifier.classes_, strict=False)

    def as_class_values(self, labels: Sequence[Any] | np.ndarray) -> list[Any]:
        """Labels from text (CLI, HTTP) converted to the classes' own type (``"3"`` -> ``3``)."""
        if not self.classes:
            return list(labels)
        return labels_like(labels, self.classifier.classes_)


def remove_saved_classes(directory: str | os.PathLike[str], labels: Sequence[Any]) -> list[Any]:
    """Remove classes from a saved model folder and save it; returns the classes that remain.

    Only the estimator is read, so no embedder is loaded: this works on any folder written by
    :meth:`FewShotModel.save` or an estimator's ``save``. Labels given as text are converted to
    the classes' type.
    """
    classifier = load_estimator(directory)
    classifier.remove_classes(labels_like(labels, classifier.classes_))
    classifier.commit(directory)
    return list(classifier.classes_.tolist())


def _shots(items: Sequence[Any]) -> Sequence[Any]:
    """Shots as given, refusing blank texts: a shot with no words would pull its prototype
    toward whatever the model makes of nothing."""
    if not isinstance(items, (str, bytes)):
        blank = next(
            (i for i, item in enumerate(items) if isinstance(item, str) and not item.strip()), None
        )
        if blank is not None:
            raise ValueError(f"shot {blank} is an empty text")
    return items


def _labels(labels: Any, n: int) -> np.ndarray:
    """Labels of ``n`` items; one label (a text or a number) is every item's."""
    if isinstance(labels, (str, bytes)) or np.isscalar(labels):
        labels = [labels] * n
    y = as_label_array(labels)
    if len(y) != n:
        raise ValueError(f"got {n} items but {len(y)} labels")
    return y


def _every_class(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [n, n_classes] as (positions, probabilities) of every class."""
    return np.broadcast_to(np.arange(proba.shape[1]), proba.shape), proba


def _predictions(
    positions: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    top_k: int,
    rejected: np.ndarray | None,
) -> list[Prediction]:
    """Answers from the probabilities [n, k] of the classes at ``positions`` [n, k] (all classes,
    or an index's candidates; ``-1``: none): the top ``top_k``, "unknown" where ``rejected``."""
    k = min(top_k, int((positions >= 0).sum(axis=1).min()))
    ranked = np.where(positions >= 0, proba, -np.inf)  # a candidate of no class comes last
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(proba))[:, None]
    best, p = positions[rows, order], proba[rows, order]
    rejected = np.zeros(len(proba), bool) if rejected is None else rejected
    return [
        Prediction(
            UNKNOWN if rej else classes[idx[0]].item(),
            float(pr[0]),
            [(classes[i].item(), float(q)) for i, q in zip(idx, pr, strict=True)],
            bool(rej),
        )
        for idx, pr, rej in zip(best, p, rejected, strict=True)
    ]


def _check_described(descriptions: Mapping[Any, str], classes: np.ndarray) -> None:
    unknown = [label for label in descriptions if label not in set(classes.tolist())]
    if unknown:
        raise ValueError(
            f"descriptions name {len(unknown)} classes that have no examples: "
            f"{', '.join(map(str, unknown[:10]))}"
        )


def _read_rejection(data: Any, n_features: int, directory: Any) -> Rejection | None:
    """The saved rejection rule; a probability threshold of an older version is dropped with
    a warning (probabilities shrink as classes are added, so it would not survive updates)."""
    if not data:
        return None
    if data.get("score") != "similarity":
        warnings.warn(
            f"{directory} has a rejection threshold on probabilities from an older version; it "
            "is not applied: run `protoshot calibrate` again",
            UserWarning,
            stacklevel=3,
        )
        return None
    return Rejection.from_dict(data, n_features)
