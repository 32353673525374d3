"""The ``Embedder`` protocol and the registry that turns spec strings into embedders."""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, get_args, runtime_checkable
from urllib.parse import parse_qsl, urlencode

import numpy as np

Modality = Literal["text", "image", "any"]
MODALITIES: tuple[Modality, ...] = get_args(Modality)
F = TypeVar("F", bound=Callable[..., Any])


@runtime_checkable
class Embedder(Protocol):
    """A frozen model that maps items to vectors.

    Attributes
    ----------
    spec : str
        The string that re-creates this embedder through :func:`create_embedder`.
    fingerprint : str
        Stable hex digest of everything that decides the vectors: backend, model id and
        revision or a hash of the weights, preprocessing, pooling and normalisation. The
        cache and saved classifiers key on it.
    dim : int
        Length of each vector.
    modality : {"text", "image", "any"}
        What the items are: strings, images (paths, PIL images, arrays) or anything the
        model takes.
    """

    @property
    def spec(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def modality(self) -> Modality: ...

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Embed ``items`` in order: float32 [n_items, dim]."""
        ...


@dataclass(frozen=True)
class _Entry:
    pattern: str  # "minilm" or "st:<name-or-path>"
    factory: Callable[..., Embedder]
    prefix: bool
    requires: tuple[tuple[str, str], ...]  # (module, pip extra) pairs
    top: Callable[[], Any] | None  # the pretrained top of a model that splits (features=lower)


@dataclass(frozen=True)
class EmbedderInfo:
    """A registered embedder: how its spec is written, what it is, and the pip extras it still
    needs here (empty when it is ready to use)."""

    spec: str
    about: str
    missing_extras: tuple[str, ...]


_REGISTRY: dict[str, _Entry] = {}
_BACKENDS = ("st", "hf", "timm_models", "open_clip_models", "efficientnet", "adapter", "tuned")


def register_embedder(
    key: str,
    *,
    usage: str | None = None,
    requires: tuple[tuple[str, str], ...] = (),
    top: Callable[[], Any] | None = None,
) -> Callable[[F], F]:
    """Register a factory under a name (``"minilm"``) or a prefix (``"st"``).

    Parameters
    ----------
    key : str
        A bare name, or a prefix written ``"st:"``; a prefix factory receives the rest of the
        spec as its first argument.
    usage : str, optional
        How the spec is written, for :func:`list_embedders` (default: ``key``).
    requires : tuple of (module, extra)
        The optional packages it imports, and the ``protoshot[extra]`` that installs each.
    top : callable, optional
        For a model that splits for partial fine-tuning: builds the pretrained
        ``torch.nn.Module`` that continues its ``?features=lower`` vectors to its own
        (``forward``: the model's features [B, dim]; ``maps``: them before pooling,
        [B, dim, h, w]; ``dim``).

    Returns
    -------
    callable
        A decorator that records the factory and returns it unchanged.
    """
    prefix = key.endswith(":")
    name = key.rstrip(":")

    def decorator(factory: F) -> F:
        _REGISTRY[name] = _Entry(usage or key, factory, prefix, requires, top)
        return factory

    return decorator


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split ``"prefix:name?key=value&..."`` into (prefix or name, rest, options)."""
    base, _, query = spec.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    head, sep, rest = base.partition(":")
    if sep and head in _REGISTRY and _REGISTRY[head].prefix:
        return head, rest, options
    return base, "", options


def fetches_weights(spec: str) -> bool:
    """Whether building ``spec`` may download weights from a model hub: a prefixed spec whose
    name is not a local folder or file (bundled names and callables never fetch)."""
    _load_backends()
    head, rest, _ = parse_spec(spec)
    entry = _REGISTRY.get(head)
    if head in ("adapter", "tuned"):  # a local folder, over a base model that may be fetched
        return fetches_weights(adapter_base_spec(rest, head))
    return entry is not None and entry.prefix and not Path(rest).expanduser().exists()


def adapter_base_spec(folder: str, kind: str = "adapter") -> str:
    """The base embedder's spec an adapter (or tuned-encoder) folder names ("" when it cannot
    be read)."""
    import json

    config = Path(folder).expanduser() / ("encoder.json" if kind == "tuned" else "adapter.json")
    try:
        base = json.loads(config.read_text()).get("base")
        return str(base["spec"])
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return ""


def lower_part(spec: str) -> str:
    """The spec of the frozen lower part of ``spec``'s model (``?features=lower``), whose
    vectors :func:`upper_part` continues: what partial fine-tuning caches and trains on.

    Raises
    ------
    ValueError
        If the model does not split (naming those that do).
    """
    key, options = _splitting(spec)
    if options.get("features", "lower") not in ("pooled", "lower"):
        raise ValueError(f"{spec!r}: features={options['features']!r} does not split")
    return format_spec(key, **{**options, "features": "lower"})


def upper_part(spec: str) -> Any:
    """The pretrained ``torch.nn.Module`` that continues the vectors of ``spec``, a spec from
    :func:`lower_part`, to the model's own features."""
    key, options = _splitting(spec)
    if options.get("features") != "lower":
        raise ValueError(f"{spec!r} is not the lower part of a model (?features=lower)")
    top = _REGISTRY[key].top
    assert top is not None  # _splitting checked it
    return top()


def _splitting(spec: str) -> tuple[str, dict[str, str]]:
    _load_backends()
    key, rest, options = parse_spec(spec)
    entry = _REGISTRY.get(key)
    if entry is None or entry.top is None or rest:
        splits = sorted(name for name, e in _REGISTRY.items() if e.top is not None)
        raise ValueError(
            f"{spec!r} cannot be fine-tuned in part (models that can: {', '.join(splits)}); "
            "train a linear, residual or mlp adapter over it instead"
        )
    return key, options


def format_spec(base: str, **options: Any) -> str:
    """Inverse of :func:`parse_spec`: options set to ``None`` are left out."""
    given = {key: _option_text(value) for key, value in options.items() if value is not None}
    return f"{base}?{urlencode(given)}" if given else base


def _option_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def create_embedder(spec: str, **kwargs: Any) -> Embedder:
    """Build an embedder from its spec.

    Parameters
    ----------
    spec : str
        A bundled name (``"minilm"``, ``"efficientnet-lite0"``) or a prefixed model
        (``"st:<name-or-path>"``, ``"hf:<id-or-path>"``, ``"timm:<name>"``,
        ``"open_clip:<arch>/<pretrained>"``), optionally followed by ``?option=value&...``.
    **kwargs
        Backend options (``device``, ``precision``, ...); they override options in the spec.

    Returns
    -------
    Embedder

    Raises
    ------
    ValueError
        If the spec names no registered embedder.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str such as 'minilm', got {type(spec).__name__}")
    _load_backends()
    key, rest, options = parse_spec(spec)
    entry = _REGISTRY.get(key)
    if entry is None or (entry.prefix and not rest):
        raise ValueError(f"unknown embedder spec {spec!r}: expected one of {list_embedders()}")
    options.update(kwargs)
    return entry.factory(rest, **options) if entry.prefix else entry.factory(**options)


def list_embedders(pattern: str | None = None) -> list[str]:
    """Registered names and prefixed spec forms, sorted, optionally filtered by a glob.

    Examples
    --------
    >>> list_embedders("*clip*")  # doctest: +SKIP
    ['open_clip:<arch>/<pretrained>']
    """
    _load_backends()
    usages = sorted(entry.pattern for entry in _REGISTRY.values())
    return [u for u in usages if pattern is None or fnmatch.fnmatch(u, pattern)]


def describe_embedders() -> list[EmbedderInfo]:
    """Every registered embedder with what it is and whether its packages are installed
    (checked without importing them)."""
    import importlib.util

    _load_backends()
    out = []
    for entry in sorted(_REGISTRY.values(), key=lambda e: e.pattern):
        missing = dict.fromkeys(
            extra
            for module, extra in entry.requires
            if importlib.util.find_spec(module.partition(".")[0]) is None
        )
        about = (entry.factory.__doc__ or "").strip().splitlines()
        out.append(EmbedderInfo(entry.pattern, about[0] if about else "", tuple(missing)))
    return out


def _load_backends() -> None:
    # importing a backend module runs its @register_embedder decorators; none of them imports
    # its heavy library at module level
    for module in _BACKENDS:
        importlib.import_module(f"protoshot.embedders.{module}")
