"""Open-set similarity: how close a query is to each class, on a scale that does not depend on
how many classes there are (unlike a softmax probability), so a threshold on it survives
adding classes.

All vectors are centred on a fixed ``center`` and L2-normalised first. A class's similarity mixes
the cosine to its prototype (its shots and its name, the name counting as one shot) and the
cosine to its nearest shot or its name::

    s_c(q) = mix * cos(q, P_c) + (1 - mix) * max(max_{x in c} cos(q, x), cos(q, name_c))

The prototype term is robust to one odd shot; the nearest-shot term keeps a class made of
several distinct phrasings close to each of them. Leave-one-out scores of the shots themselves
(:func:`leave_one_out_similarity`) tell how similar genuine inputs are, with no out-of-scope
example needed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from protoshot.maths.normalize import l2_normalize

#: Weight of the prototype term (the rest is the nearest shot or name), chosen on BANKING77
#: with held-out intents as the out of scope (`benchmarks/openset.py --select`).
MIX = 0.25
#: Queries per block: the query x shot similarity matrix stays ``[CHUNK, n_shots]``.
CHUNK = 2048


class _Classes(NamedTuple):
    shots: torch.Tensor  # [m, D] unit
    codes: torch.Tensor  # [m]
    names: torch.Tensor  # [C, D] unit, zero where a class has no name
    named: torch.Tensor  # [C] bool
    sums: torch.Tensor  # [C, D] shots + name


def _classes(
    shots: torch.Tensor, codes: torch.Tensor, names: torch.Tensor, named: torch.Tensor,
    center: torch.Tensor,
) -> _Classes:  # fmt: skip
    unit = l2_normalize(shots - center)
    label = l2_normalize(names - center) * named.unsqueeze(-1)
    sums = label.index_add(0, codes, unit)
    return _Classes(unit, codes, label, named, sums)


def class_similarity(
    queries: torch.Tensor,
    shots: torch.Tensor,
    codes: torch.Tensor,
    names: torch.Tensor,
    named: torch.Tensor,
    center: torch.Tensor,
    *,
    mix: float = MIX,
) -> torch.Tensor:
    """Similarities ``[n, C]`` of raw ``queries`` [n, D] to the classes of raw ``shots`` [m, D]
    (class positions ``codes`` [m]) and raw ``names`` [C, D] (used where ``named`` [C]).
    Every class needs a shot or a name."""
    classes = _classes(shots, codes, names, named, center)
    prototypes = l2_normalize(classes.sums)
    blocks = []
    for start in range(0, len(queries), CHUNK):
        q = l2_normalize(queries[start : start + CHUNK] - center)
        near = _nearest(q, q @ classes.shots.T, classes)
        blocks.append(mix * (q @ prototypes.T) + (1 - mix) * near)
    return torch.cat(blocks) if blocks else queries.new_zeros((0, len(names)))


def leave_one_out_similarity(
    shots: torch.Tensor,
    codes: torch.Tensor,
    names: torch.Tensor,
    named: torch.Tensor,
    center: torch.Tensor,
    *,
    mix: float = MIX,
) -> torch.Tensor:
    """Each shot's best-class similarity ``[m]``, itself left out of its own class (of the
    prototype and of the nearest shots): how similar a new genuine input is likely to be.

    A shot alone in an unnamed class has nothing of its class left to be compared with: its
    score is NaN (how close it is to *other* classes says nothing about genuine inputs).
    """
    classes = _classes(shots, codes, names, named, center)
    prototypes = l2_normalize(classes.sums)
    best = []
    for start in range(0, len(shots), CHUNK):
        q, own = classes.shots[start : start + CHUNK], codes[start : start + CHUNK]
        rows = torch.arange(len(q), device=q.device)
        pair = q @ classes.shots.T
        pair[rows, rows + start] = -torch.inf  # never its own nearest shot
        proto = q @ prototypes.T
        rest = l2_normalize(classes.sums[own] - q)  # its class without it (0 when nothing left)
        proto[rows, own] = (q * rest).sum(-1)
        near = _nearest(q, pair, classes)
        alone = torch.isinf(near[rows, own])  # no other shot and no name in its class
        score = (mix * proto + (1 - mix) * near).amax(-1)
        best.append(torch.where(alone, torch.nan, score))
    return torch.cat(best) if best else shots.new_zeros(0)


def _nearest(q: torch.Tensor, pair: torch.Tensor, classes: _Classes) -> torch.Tensor:
    """``[n, C]``: the cosine to each class's nearest shot, or to its name when closer
    (-inf for a class with neither)."""
    out = pair.new_full((len(pair), len(classes.names)), -torch.inf)
    out = out.scatter_reduce(1, classes.codes.expand(len(pair), -1), pair, "amax")
    return torch.where(classes.named, torch.maximum(out, q @ classes.names.T), out)
