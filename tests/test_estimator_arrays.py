"""Arrays an update changes in O(change) while every copy of the model keeps what it saw."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from protoshot import PrototypeClassifier
from protoshot.estimators import _arrays
from protoshot.estimators._arrays import Appendable, PatchedRows, append


class Holder:
    rows = Appendable()
    sums = PatchedRows()


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 5)), max_size=25))
def test_appends_never_change_what_a_copy_sees(steps) -> None:
    """Copies appended to in any order each see exactly their own rows (a naive model:
    one list per copy)."""
    first = Holder()
    first.rows = np.zeros((0, 2))
    copies, naive = [first], [[]]
    for n, (which, count) in enumerate(steps):
        source = which % len(copies)
        new = copy.copy(copies[source])
        rows = np.full((count, 2), float(n))
        append(new, "rows", rows)
        copies.append(new)
        naive.append([*naive[source], *rows.tolist()])
    for holder, expected in zip(copies, naive, strict=True):
        assert holder.rows.tolist() == expected


def test_the_newest_copy_appends_in_place() -> None:
    holder = Holder()
    holder.rows = np.zeros((3, 2))
    append(holder, "rows", np.ones((1, 2)))  # grows the buffer
    buffer = holder.__dict__["_rows_rows"][0].array
    append(holder, "rows", np.ones((1, 2)))
    assert holder.__dict__["_rows_rows"][0].array is buffer  # no copy
    assert holder.rows.tolist() == [[0.0, 0.0]] * 3 + [[1.0, 1.0]] * 2


def test_patched_rows_read_the_same_as_a_whole_array_and_fold(monkeypatch) -> None:
    monkeypatch.setattr(_arrays, "FOLD_MIN", 3)
    holder = Holder()
    holder.sums = np.zeros((100, 2))
    naive = np.zeros((100, 2))
    before = copy.copy(holder)
    for step, rows in enumerate([[1, 5], [5], [7, 9]]):
        positions = np.asarray(rows)
        values = np.full((len(rows), 2), float(step + 1))
        Holder.sums.patch(holder, positions, values)
        naive[positions] = values
        np.testing.assert_array_equal(holder.sums, naive)
        np.testing.assert_array_equal(
            Holder.sums.rows(holder, np.asarray([9, 5, 0])), naive[[9, 5, 0]]
        )
    assert holder.__dict__["_sums_patched"][1] == {}  # four patched rows: folded
    np.testing.assert_array_equal(before.sums, np.zeros((100, 2)))


def test_an_update_of_a_copy_leaves_the_original_as_it_was() -> None:
    rng = np.random.default_rng(0)
    model = PrototypeClassifier().fit(rng.normal(size=(6, 4)), [0, 0, 1, 1, 2, 2])
    x = rng.normal(size=(5, 4))
    proba = model.predict_proba(x)
    support, sums = model.support_.copy(), model.sums_.copy()
    new = copy.copy(model)
    new.partial_fit(rng.normal(size=(3, 4)), [0, 1, 0])
    new.partial_fit(rng.normal(size=(1, 4)), [3])
    np.testing.assert_array_equal(model.predict_proba(x), proba)
    np.testing.assert_array_equal(model.support_, support)
    np.testing.assert_array_equal(model.sums_, sums)
    refit = PrototypeClassifier().fit(new.support_, new.classes_[new.support_codes_])
    np.testing.assert_allclose(new.sums_, refit.sums_, atol=1e-6)  # shots kept in float32
