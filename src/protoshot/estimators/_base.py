"""What every protoshot estimator shares: labels, class names, normalisation, updates, saving.

Every estimator keeps its shots (``support_``, ``support_codes_``): a fitted head refits from
them, and open-set rejection (:mod:`protoshot.openset`) compares a query with the nearest shot.
A subclass says which arrays it keeps per class (``_per_class``), how new shots enter its state
(:meth:`_absorb`), how it refits (:meth:`_refit`) and how it scores normalised queries
(:meth:`_scores`). Classes can be added with shots, with a name alone (for methods that use
names) or removed; all are exact updates.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from protoshot import store
from protoshot._device import best_device
from protoshot._validation import check_choice
from protoshot.estimators._arrays import Appendable, append
from protoshot.labels import canonical_labels, check_label_kinds, encode_labels
from protoshot.maths.normalize import NORMALIZATIONS, normalize_tensor
from protoshot.maths.prototypes import class_sums_tensors
from protoshot.methods.support import SupportSet, held_out_temperature, rows_support
from protoshot.store import Change

#: ``class_embeddings`` arguments: each class label -> the embedding of its name or description.
ClassEmbeddings = Mapping[Any, Any]


#: The held-out temperature is fitted on at most this many classes (a seeded sample): scoring
#: every held-out shot against every class grows with the square of the class count.
MAX_CLASSES_HELD = 500


@dataclass(frozen=True)
class Compaction:
    """A snapshot written beside a journal, not yet in use: its config, its arrays file, and
    where the journal stood when its model was taken."""

    config: dict[str, Any]
    arrays: store.ArraysFile
    since: store.Position


class FewShotEstimator(ClassifierMixin, BaseEstimator):
    """Base of :class:`PrototypeClassifier`, :class:`LinearClassifier`, :class:`AutoClassifier`."""

    #: The method name a model folder records.
    method: ClassVar[str]
    #: Constructor parameters saved in the folder (``center`` and ``device`` are not).
    _params: ClassVar[tuple[str, ...]]
    #: Per-class arrays (first axis = class), besides the class names.
    _per_class: ClassVar[tuple[str, ...]] = ()
    #: Per-class arrays every estimator keeps: name embeddings, which classes have one, and when
    #: each class last changed (Unix seconds; 0 = before protoshot recorded it).
    _kept_per_class: ClassVar[tuple[str, ...]] = ("names_", "named_", "updated_")
    normalization: str
    center: np.ndarray | None
    device: str | None
    n_features_in_: int
    #: The shots, raw, in the order they came, and their class positions: appended in place.
    support_ = Appendable()
    support_codes_ = Appendable()

    # ----------------------------------------------------------------------------- fitting
    @contextmanager
    def _all_or_nothing(self) -> Iterator[None]:
        """An update that raises leaves the estimator as it was (every update replaces its
        arrays rather than writing into them, so a shallow copy of the attributes suffices)."""
        saved = dict(self.__dict__)
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def fit(self, X: Any, y: Any, class_embeddings: ClassEmbeddings | None = None) -> Any:
        """Fit on support embeddings ``X`` [n_samples, n_features] with labels ``y``.

        ``class_embeddings`` maps labels to the embedding of the class's name or description
        (same model); a label not in ``y`` becomes a class with no shots, for methods that use
        names.
        """
        self._check_params()
        check_label_kinds(y)
        y = canonical_labels(y)
        with self._all_or_nothing():
            X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], reset=True)
            _check_scale(X)
            _check_targets(y)
            self.center_ = self._initial_center(X)
            self.classes_, codes = encode_labels(y)
            self._start()
            self._absorb(X, codes)
            names = self._name_change(class_embeddings, time.time())
            if names is not None:
                self._apply_run([names])
            self.updated_[:] = time.time()
            self._refit()
        self._detach()
        return self

    def _detach(self) -> None:
        """Forget the folder this model was read from: it is new, and saved whole."""
        self._folder: Path | None = None
        self._position: store.Position | None = None
        self._unsaved: list[Change] = []

    def _start(self) -> None:
        """Empty state for ``classes_`` (no shots, no names yet)."""
        n, d = len(self.classes_), self.n_features_in_
        self.names_, self.named_ = np.zeros((n, d)), np.zeros(n, dtype=bool)
        self.updated_ = np.zeros(n)
        self._reset(n, d)
        self.support_ = np.zeros((0, d), dtype=np.float32)
        self.support_codes_ = np.zeros(0, dtype=np.int64)
        self.metadata_: dict[str, Any] = getattr(self, "metadata_", {})

    def _adopt(
        self,
        source: FewShotEstimator,
        saved: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None,
    ) -> None:
        """Fit on the shots and names ``source`` keeps (same classes and centre), no checks;
        or, given the ``saved`` state and arrays of a fit on them, restore that fit."""
        self.classes_, self.n_features_in_ = source.classes_, source.n_features_in_
        self.center_ = source.center_
        self._start()
        self.names_, self.named_ = source.names_.copy(), source.named_.copy()
        self.updated_ = source.updated_.copy()
        if len(source.support_):
            self._absorb(source.support_, source.support_codes_)
        if saved is None:
            self._refit()
        else:
            self._restore(*saved)

    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, class_embeddings: ClassEmbeddings | None = None
    ) -> Any:
        """Add shots to existing or new classes: an exact update (a fitted head refits).

        ``classes`` is accepted for scikit-learn compatibility and not needed: any call may
        bring new classes.
        """
        if not hasattr(self, "classes_"):
            return self.fit(X, y, class_embeddings)
        self._check_params()
        check_label_kinds(y)
        y = canonical_labels(y)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], reset=False)
        _check_scale(X)
        _check_targets(y)
        now = time.time()
        shots = Change("add", tuple(np.asarray(y).tolist()), X, time=now)
        names = self._name_change(class_embeddings, now)
        return self.update([shots] if names is None else [shots, names])

    def add_class_embeddings(self, class_embeddings: ClassEmbeddings) -> Any:
        """Set the name embeddings of classes, creating classes that have none yet (zero-shot)."""
        check_is_fitted(self)
        names = self._name_change(class_embeddings, time.time())
        return self if names is None else self.update([names])

    def remove_classes(self, labels: Sequence[Any]) -> Any:
        """Forget the given classes (exact: their statistics and shots are dropped)."""
        check_is_fitted(self)
        return self.update([Change("remove", tuple(canonical_labels(labels)))])

    def update(self, changes: Sequence[Change]) -> Any:
        """Apply ``changes`` (:class:`~protoshot.store.Change`) and refit once: all or nothing.

        They are kept until :meth:`commit` (or :meth:`save`) makes them durable. The update
        methods (``partial_fit``, ``add_class_embeddings``, ``remove_classes``) come here.
        """
        check_is_fitted(self)
        self._apply(changes)
        self._unsaved = [*self._unsaved, *changes]
        return self

    def _apply(self, changes: Sequence[Change]) -> None:
        """Apply changes in order, consecutive shot additions as one, then refit once."""
        with self._all_or_nothing():
            for run in _runs(changes):
                self._apply_run(run)
            if any(change.op != "metadata" for change in changes):
                self._refit()

    def _apply_run(self, run: list[Change]) -> None:
        """One change, or several ``add`` changes taken in together."""
        op = run[0].op
        if op == "metadata":
            self.metadata_ = {**self.metadata_, **dict(run[0].metadata or {})}
            return
        labels = np.asarray(canonical_labels([label for c in run for label in c.labels]))
        if op == "remove":
            self._drop(labels)
            return
        vectors = np.concatenate([_2d(c.vectors, self.n_features_in_) for c in run])
        codes = self._grow(labels)
        if op == "add":
            self._absorb(vectors, codes)
        else:
            self.names_, self.named_ = self.names_.copy(), self.named_.copy()
            self.names_[codes], self.named_[codes] = vectors, True
        times = np.concatenate([np.full(len(c.labels), c.time) for c in run])
        self.updated_ = self.updated_.copy()
        np.maximum.at(self.updated_, codes, times)

    def _drop(self, labels: np.ndarray) -> None:
        unknown = labels[~np.isin(labels, self.classes_)]
        if unknown.size:
            raise ValueError(
                f"unknown classes {unknown.tolist()}; known: {self.classes_.tolist()[:20]}"
            )
        keep = ~np.isin(self.classes_, labels)
        if not keep.any():
            raise ValueError("cannot remove every class; at least one must remain")
        for name in (*self._per_class, *self._kept_per_class):
            setattr(self, name, getattr(self, name)[keep])
        rows = keep[self.support_codes_]
        self.support_ = self.support_[rows]
        self.support_codes_ = (np.cumsum(keep) - 1)[self.support_codes_[rows]]
        self.classes_ = self.classes_[keep]

    def commit(self, directory: str | os.PathLike[str]) -> Path:
        """Make the updates since this model was read from (or saved to) ``directory`` durable
        there: one journal entry, flushed to disk, whose size is the updates' own.

        A folder written by an older protoshot (no journal) is saved whole instead.

        Raises
        ------
        ValueError
            If the model was not read from or saved to ``directory`` (use :meth:`save`), or the
            folder was saved again by someone else since.
        """
        check_is_fitted(self)
        path = Path(directory)
        if self._folder is None or not path.exists() or not path.samefile(self._folder):
            raise ValueError(
                f"this model was not read from or saved to {path}: save it there with "
                "save(..., overwrite=True)"
            )
        if self._position is None:
            return self.save(path, overwrite=True)
        if self._unsaved:
            self._position = store.append_changes(path, self._position, self._unsaved)
            self._unsaved = []
        return path

    @property
    def shot_counts_(self) -> np.ndarray:
        """int64 [n_classes]: shots per class (a class known by its name alone has 0)."""
        check_is_fitted(self)
        if "counts_" in self._per_class:  # kept counts also cover shots saved before rows were
            return np.asarray(self.counts_)
        return np.bincount(self.support_codes_, minlength=len(self.classes_))

    def class_sums(self, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class sums ``[C, D]`` and counts ``[C]`` of the normalised shots, a class known by
        its name alone counting its normalised name as one shot (for transductive refinement)."""
        check_is_fitted(self)
        if "sums_" in self._per_class:
            sums = torch.as_tensor(self.sums_, dtype=dtype)
            counts = torch.as_tensor(self.counts_)
        else:
            x = self._normalized(torch.as_tensor(self.support_).to(dtype))
            codes = torch.as_tensor(self.support_codes_)
            sums, counts = class_sums_tensors(x[None], codes[None], len(self.classes_))
            sums, counts = sums[0], counts[0]
        names, named = self._named_tensors(sums)
        if names is not None and named is not None:
            empty = named & (counts == 0)
            sums = torch.where(empty.unsqueeze(-1), self._normalized(names), sums)
            counts = torch.where(empty, torch.ones_like(counts), counts)
        return sums, counts.to(dtype)

    def normalized(self, X: Any) -> torch.Tensor:
        """Embeddings ``X`` [n, n_features] checked and normalised as the shots were (float64)."""
        check_is_fitted(self)
        X = _check_scale(validate_data(self, X, dtype=[np.float64, np.float32], reset=False))
        return self._normalized(torch.tensor(X, dtype=torch.float64))

    # ----------------------------------------------------------------------------- inference
    def decision_function(self, X: Any) -> np.ndarray:
        """Scores [n_samples, n_classes]; higher is more likely.

        As in scikit-learn, two classes give one column, ``score(classes_[1]) - score(classes_[0])``.
        """
        scores = self._query_scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities [n_samples, n_classes]."""
        scores = torch.from_numpy(self._query_scores(X))
        return torch.softmax(scores / self._temperature(), dim=-1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most likely class of each sample."""
        scores = self._query_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def _query_scores(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = _check_scale(validate_data(self, X, dtype=[np.float64, np.float32], reset=False))
        dev, dtype = self._compute_device()
        query = self._normalized(torch.tensor(X, device=dev, dtype=dtype))
        return self._scores(query).cpu().numpy()

    # ----------------------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the model to ``directory``: arrays in safetensors, everything else in JSON.

        The write is atomic and durable (see :mod:`protoshot.store`): a reader, or a crash, sees
        the old model or the new one, never a mix. Later updates can be :meth:`commit`-ted to it.
        """
        position = store.write_model(directory, *self.snapshot(), overwrite=overwrite)
        self._folder, self._position, self._unsaved = Path(directory), position, []
        return Path(directory)

    def write_snapshot(self, directory: str | os.PathLike[str]) -> Compaction:
        """Write this model's arrays into ``directory``, where :meth:`commit` writes: the slow
        half of folding the journal into a new snapshot, which needs no lock (nothing reads the
        file yet). :meth:`install_snapshot` finishes it."""
        if self._position is None:
            raise ValueError("only a model read from or saved to a folder can be compacted")
        if self._unsaved:
            raise ValueError("commit the model's updates before writing a snapshot of it")
        config, arrays = self.snapshot()
        return Compaction(config, store.write_arrays(directory, arrays), self._position)

    def install_snapshot(self, directory: str | os.PathLike[str], compaction: Compaction) -> None:
        """Make ``compaction`` the folder's snapshot; this model is the current one, with every
        update since the snapshot's model committed (they move to the new journal). Call it
        holding the writer that commits, so no update comes between."""
        if self._unsaved or self._position is None:
            raise ValueError("commit the model's updates before installing a snapshot")
        if compaction.since.file != self._position.file:
            raise ValueError(
                "the snapshot was taken before the folder's last compaction: write a new one"
            )
        self._position = store.install_snapshot(
            directory, compaction.config, compaction.arrays, since=compaction.since,
            upto=self._position,
        )  # fmt: skip

    def snapshot(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The model as a folder holds it: the config (JSON) and the arrays (safetensors)."""
        check_is_fitted(self)
        arrays = {name.rstrip("_"): getattr(self, name) for name in self._per_class}
        if self.named_.any():
            arrays |= {"names": self.names_, "named": self.named_.astype(np.uint8)}
        arrays |= {"support": self.support_, "support_codes": self.support_codes_}
        arrays["updated"] = self.updated_
        if self.center_ is not None:
            arrays["center"] = self.center_
        config = {
            "method": self.method,
            "params": {name: getattr(self, name) for name in self._params},
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str,
            "n_features_in": int(self.n_features_in_),
            "fixed_center": self.center is not None,
            "state": self._state(),
            "metadata": self.metadata_,
        }
        return config, arrays | self._extra_arrays()

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, device: str | None = None) -> Any:
        """Load a model written by :meth:`save` (safetensors + JSON; nothing is unpickled)."""
        stored = store.read_model(directory)
        method = stored.config.get("method")
        if method != cls.method:
            raise ValueError(
                f"{directory} holds a {method!r} model, not {cls.method!r}: load it with "
                "protoshot.load_estimator"
            )
        return cls._from_stored(stored, device)

    @classmethod
    def _from_stored(cls, stored: store.StoredModel, device: str | None) -> Any:
        config, arrays = stored.config, stored.arrays
        try:
            model = cls(device=device, **config["params"])
            model._check_params()
        except (TypeError, ValueError) as err:
            raise ValueError(f"{stored.arrays_path.parent}: params are not valid: {err}") from None
        # the classes' own type (never a stored dtype, which could truncate names)
        model.classes_ = np.asarray(config["classes"])
        model.n_features_in_ = int(config["n_features_in"])
        model.metadata_ = dict(config.get("metadata") or {})
        n, d = len(model.classes_), model.n_features_in_
        _check_arrays(arrays, cls._per_class, n, d, stored.arrays_path)
        model.center_ = arrays.get("center")
        if config.get("fixed_center") and model.center_ is not None:
            model.center = model.center_  # a centre given at fit time stays fixed on updates
        model.names_ = arrays.get("names", np.zeros((n, d)))
        model.named_ = arrays.get("named", np.zeros(n, dtype=np.uint8)).astype(bool)
        model.updated_ = arrays.get("updated", np.zeros(n)).astype(np.float64)
        for name in cls._per_class:
            setattr(model, name, arrays[name.rstrip("_")])
        # prototype folders written before every method kept its shots have sums and no rows
        model.support_ = arrays.get("support", np.zeros((0, d), dtype=np.float32))
        model.support_codes_ = arrays.get("support_codes", np.zeros(0, dtype=np.int64))
        scored = (model.shot_counts_ > 0) | model.named_
        if not scored.all():
            raise ValueError(
                f"{stored.arrays_path}: classes {model.classes_[~scored].tolist()[:5]} have "
                "neither shots nor a name"
            )
        model._restore(config.get("state") or {}, arrays)
        model._detach()
        model._folder, model._position = stored.arrays_path.parent, stored.position
        if stored.changes:
            try:
                model._apply(stored.changes)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"{stored.arrays_path.parent}: the journal's updates do not apply: {err}"
                ) from None
        return model

    # ----------------------------------------------------------------------------- hooks
    def _reset(self, n_classes: int, n_features: int) -> None:
        """Start the per-class state of ``n_classes`` empty classes."""

    def _absorb(self, X: np.ndarray, codes: np.ndarray) -> None:
        """Take in shots ``X`` of classes ``codes`` (positions in ``classes_``)."""
        append(self, "support_", X.astype(np.float32))
        append(self, "support_codes_", codes.astype(np.int64))

    def _refit(self) -> None:
        """Bring derived state (a fitted head, a choice) up to date after a change."""

    def _scores(self, query: torch.Tensor) -> torch.Tensor:
        """Scores ``[n, n_classes]`` of normalised queries."""
        raise NotImplementedError

    def _temperature(self) -> float:
        return 1.0

    def _state(self) -> dict[str, Any]:
        """JSON state beyond the parameters (e.g. what ``auto`` chose)."""
        return {}

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Rebuild derived state after loading."""
        self._refit()

    # ----------------------------------------------------------------------------- internals
    def _check_params(self) -> None:
        check_choice("normalization", self.normalization, NORMALIZATIONS)

    def _compute_device(self) -> tuple[torch.device, torch.dtype]:
        dev = best_device(self.device)
        return dev, torch.float64 if dev.type == "cpu" else torch.float32

    def _initial_center(self, X: np.ndarray) -> np.ndarray | None:
        if self.normalization != "cl2n":
            return None
        if self.center is None:
            return X.mean(axis=0).astype(np.float64)
        center = np.asarray(self.center, dtype=np.float64)
        if center.shape != (X.shape[1],) or not np.isfinite(center).all():
            raise ValueError(
                f"center must be finite with shape ({X.shape[1]},), got {center.shape}"
            )
        return center

    def _center_tensor(self, like: torch.Tensor) -> torch.Tensor | None:
        if self.center_ is None:
            return None
        return torch.as_tensor(self.center_, device=like.device, dtype=like.dtype)

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_tensor(x, self.normalization, self._center_tensor(x))

    def _grow(self, labels: np.ndarray) -> np.ndarray:
        """Add the classes of ``labels`` that are new; returns each label's class position."""
        new_classes = np.unique(labels)
        if _label_kind(new_classes) != _label_kind(self.classes_):
            raise TypeError(
                f"new labels are of type {new_classes.dtype}, but the classifier's are "
                f"{self.classes_.dtype}"
            )
        new_classes = new_classes[~np.isin(new_classes, self.classes_)]
        if new_classes.size:  # rows made for them in sorted order (copies, not fancy indexing)
            at = np.searchsorted(self.classes_, new_classes)
            unnamed = not self.named_.any()
            for name in (*self._per_class, *self._kept_per_class):
                array = getattr(self, name)
                if name == "names_" and unnamed:  # all zeros: new zeros copy nothing
                    grown = np.zeros((len(array) + len(at), *array.shape[1:]), array.dtype)
                else:
                    grown = _with_zero_rows(array, at)
                setattr(self, name, grown)
            kind = np.result_type(self.classes_, new_classes)  # longer names are not cut
            merged = _with_zero_rows(self.classes_.astype(kind), at)
            merged[at + np.arange(len(at))] = new_classes
            self.support_codes_ = np.searchsorted(merged, self.classes_)[self.support_codes_]
            self.classes_ = merged
        return np.searchsorted(self.classes_, labels)

    def _name_change(self, class_embeddings: ClassEmbeddings | None, now: float) -> Change | None:
        """The change that sets these name embeddings (``None`` for none), checked."""
        if class_embeddings is None:
            return None
        if not isinstance(class_embeddings, Mapping):
            raise TypeError(
                "class_embeddings must map each class label to its name's embedding, got "
                f"{type(class_embeddings).__name__}"
            )
        if not class_embeddings:
            return None
        labels = canonical_labels(list(class_embeddings))
        vectors = np.asarray([np.asarray(v, dtype=np.float64) for v in class_embeddings.values()])
        if vectors.shape != (len(labels), self.n_features_in_) or not np.isfinite(vectors).all():
            raise ValueError(
                f"class embeddings must be finite vectors of {self.n_features_in_} features, "
                f"got shape {vectors.shape}"
            )
        return Change("name", tuple(np.asarray(labels).tolist()), vectors, time=now)

    def _named_tensors(self, like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Raw name embeddings ``[C, D]`` and which classes have one, or ``None`` without names."""
        if not self.named_.any():
            return None, None
        names = torch.as_tensor(self.names_, device=like.device, dtype=like.dtype)
        return names, torch.as_tensor(self.named_, device=like.device)

    def _recenter(self) -> None:
        """For estimators that keep their shots: the CL2N centre is the mean of all of them
        (unless ``center`` fixes it), so an update gives what fitting from scratch would."""
        if self.normalization == "cl2n" and self.center is None and len(self.support_):
            self.center_ = self.support_.mean(0, dtype=np.float64)

    def support_set(
        self, dtype: torch.dtype | None = None, classes: np.ndarray | None = None
    ) -> SupportSet:
        """The kept shots (and names) as one normalised episode, as the methods see them, on
        the estimator's device, in ``dtype`` (default: the scoring precision); with
        ``classes`` (sorted positions), of those classes only."""
        dev, default = self._compute_device()
        shots, codes, n = self.support_, self.support_codes_, len(self.classes_)
        if classes is not None:
            rows = np.isin(codes, classes)
            shots, codes, n = shots[rows], np.searchsorted(classes, codes[rows]), len(classes)
        x = torch.as_tensor(shots, device=dev).to(dtype or default)
        names, named = self._named_tensors(x)
        if classes is not None and names is not None and named is not None:
            names, named = names[classes], named[classes]
        return rows_support(
            x, torch.as_tensor(codes, device=dev), n, normalization=self.normalization,
            center=self._center_tensor(x), names=names, named=named,
        )  # fmt: skip

    def _held_out_temperature(
        self, fit: Callable[[SupportSet], Callable[[torch.Tensor], torch.Tensor]], default: float
    ) -> float:
        """The softmax temperature under which the shots' own cross-validated probabilities are
        honest (least NLL; :func:`~protoshot.methods.support.held_out_temperature`), or
        ``default`` when no class has two shots to hold out. Past :data:`MAX_CLASSES_HELD`
        classes, a seeded sample of them stands for all, so an update costs the same however
        many classes there are."""
        n = len(self.classes_)
        sample = None
        if n > MAX_CLASSES_HELD:
            sample = np.sort(np.random.default_rng(0).choice(n, MAX_CLASSES_HELD, replace=False))
        found = held_out_temperature(self.support_set(torch.float64, sample), fit)
        return default if found is None else found

    def _check_every_class_scored(self, prior_weight: float) -> None:
        """Refuse classes with neither shots nor a usable name."""
        empty = (self.shot_counts_ == 0) & ~(self.named_ & (prior_weight > 0))
        if empty.any():
            raise ValueError(
                f"classes {self.classes_[empty].tolist()[:10]} have no shots; give them shots, "
                "or a name with a method that uses names (prior_weight > 0)"
            )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = False
        return tags


def _check_arrays(
    arrays: Mapping[str, np.ndarray], per_class: Sequence[str], n: int, d: int, where: Path
) -> None:
    """The stored arrays against the config's ``n`` classes of ``d`` features: present, of the
    right shapes and kinds, finite, counts and class positions in range. One line names the
    first array that is wrong."""
    expected: dict[str, tuple[tuple[int | None, ...], str]] = {
        **{name.rstrip("_"): ((n,), "") for name in per_class},
        "names": ((n, d), "f"),
        "named": ((n,), "iub"),
        "updated": ((n,), "f"),
        "center": ((d,), "f"),
        "support": ((None, d), "f"),
        "support_codes": ((None,), "iu"),
    }
    required = {name.rstrip("_") for name in per_class}
    for name in required - set(arrays):
        raise ValueError(f"{where}: the array {name!r} is missing")
    for name, array in arrays.items():
        if name not in expected:
            continue  # a method's own arrays (a head) are checked where they are read
        shape, kinds = expected[name]
        fits = len(array.shape) >= len(shape) and all(
            want is None or got == want for got, want in zip(array.shape, shape, strict=False)
        )
        if not fits or (kinds and array.dtype.kind not in kinds):
            raise ValueError(
                f"{where}: the array {name!r} has shape {array.shape} and dtype {array.dtype}; "
                f"expected {tuple('m' if s is None else s for s in shape)} for {n} classes of "
                f"{d} features"
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"{where}: the array {name!r} holds NaN or infinite values")
        if name in ("counts", "updated") and (array < 0).any():
            raise ValueError(f"{where}: the array {name!r} holds negative values")
        if name == "updated" and (array >= LAST_TIME).any():
            raise ValueError(f"{where}: the array 'updated' holds times past the year 9999")
    codes = arrays.get("support_codes")
    if codes is not None and (
        len(codes) != len(arrays.get("support", ()))
        or (len(codes) and not 0 <= codes.min() <= codes.max() < n)
    ):
        raise ValueError(
            f"{where}: the array 'support_codes' does not match 'support' and the {n} classes"
        )


#: Unix seconds of 10000-01-01: a stored time must come before (datetime stops at 9999).
LAST_TIME = 253_402_300_800

#: Largest embedding value compared: squared distances of larger ones overflow float64.
MAX_VALUE = 1e100


def _check_scale(X: np.ndarray) -> np.ndarray:
    """``X`` if its values can be compared (squared distances stay finite), else an error
    rather than NaN probabilities."""
    largest = float(np.abs(X).max()) if X.size else 0.0
    if largest > MAX_VALUE:
        raise ValueError(
            f"embeddings hold values up to {largest:.3g}, too large to compare (at most "
            f"{MAX_VALUE:g}): are they really embeddings?"
        )
    return X


def _check_targets(y: np.ndarray) -> None:
    """scikit-learn's check that ``y`` holds classes, without its warning that more classes than
    half the samples "could represent a regression problem": few-shot data always has that."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than")
        check_classification_targets(y)


def _label_kind(labels: np.ndarray) -> str:
    """``"bool"``, ``"number"`` (integers, floats) or ``"text"``: labels of one kind only ever
    join classes of the same kind (``True`` is not class 1, ``5`` is not class "5")."""
    if labels.dtype.kind == "b":
        return "bool"
    return "number" if labels.dtype.kind in "iufc" else "text"


def _with_zero_rows(array: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``array`` with a zero row inserted before each of the sorted positions ``at``: copied a
    slice at a time (memory speed; ``np.insert`` with several positions goes through a mask)."""
    out = np.zeros((len(array) + len(at), *array.shape[1:]), array.dtype)
    start = 0
    for shift, stop in enumerate([*at.tolist(), len(array)]):  # one slice per new class
        out[start + shift : stop + shift] = array[start:stop]
        start = stop
    return out


def _runs(changes: Sequence[Change]) -> Iterator[list[Change]]:
    """Changes grouped for applying: consecutive shot additions together, others alone (a
    replayed journal then costs one pass over the model per run, not per update)."""
    run: list[Change] = []
    for change in changes:
        if run and not (change.op == "add" and run[-1].op == "add"):
            yield run
            run = []
        run.append(change)
    if run:
        yield run


def _2d(vectors: np.ndarray | None, n_features: int) -> np.ndarray:
    """A change's vectors, checked against the model's dimension."""
    if vectors is None or vectors.ndim != 2 or vectors.shape[1] != n_features:
        shape = None if vectors is None else vectors.shape
        raise ValueError(f"a change's vectors must have {n_features} features, got {shape}")
    return vectors
