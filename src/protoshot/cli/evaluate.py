"""``protoshot evaluate``: mean accuracy ± 95% CI of nearest-prototype classification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from protoshot.cli._common import (
    AdapterOption,
    CacheDirOption,
    DelimiterOption,
    DeviceOption,
    EmbeddingColumnOption,
    JsonOption,
    LabelColumnOption,
    LabelsOption,
    ModelOption,
    NoCacheOption,
    TextColumnOption,
    cache_arg,
    plain,
    split_ints,
    split_list,
    stderr,
    user_errors,
    with_adapter,
)

if TYPE_CHECKING:
    from protoshot.cache import CacheArg


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command("evaluate")(evaluate_command)


def evaluate_command(
    source: Annotated[
        str,
        typer.Argument(
            help="Embedding table (.parquet from `protoshot embed`, .npz), or raw data "
            "(image folder, CSV/JSONL/Parquet, saved HF dataset, banking77[:split], ...) with --model."
        ),
    ],
    model: ModelOption = None,
    adapter: AdapterOption = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="episodic: N-way K-shot episodes; all-class: K shots of every class from SOURCE, "
            "the whole --test split classified, repeated over --episodes seeds."
        ),
    ] = "episodic",
    test: Annotated[
        str | None, typer.Option(help="all-class protocol: the test split (table or source).")
    ] = None,
    ways: Annotated[str, typer.Option(help="Classes per episode, or 'all'.")] = "5",
    shots: Annotated[
        str,
        typer.Option(
            help="Shots per class, comma-separated; 0: class names alone (named methods)."
        ),
    ] = "1,5",
    queries: Annotated[int, typer.Option(min=1, help="Query samples per class.")] = 15,
    episodes: Annotated[
        int, typer.Option(min=1, help="Episodes (all-class: seeds) to average over.")
    ] = 600,
    seed: Annotated[int, typer.Option(help="Seed of the episode sampler.")] = 0,
    metrics: Annotated[
        str, typer.Option(help="sqeuclidean, euclidean, cosine, dot; comma-separated.")
    ] = "sqeuclidean,cosine",
    normalizations: Annotated[
        str, typer.Option(help="none, l2, cl2n (centring + L2); comma-separated.")
    ] = "none,l2,cl2n",
    methods: Annotated[
        str,
        typer.Option(
            help="prototypes, named-prototypes, linear, named-linear, auto, mahalanobis; and the "
            "transductive soft-kmeans, sinkhorn (rows labelled transductive); comma-separated. "
            "Named methods use the class names (or --class-descriptions) embedded by the same "
            "text model; --metrics/--normalizations apply to the prototype methods."
        ),
    ] = "prototypes",
    class_descriptions: Annotated[
        Path | None,
        typer.Option(help="CSV of label,text: describe classes instead of using their names."),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            help="Only these classes (novel classes): comma-separated, or @FILE with one per line."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="Evaluate on one part of a seeded class split: base, validation or novel."
        ),
    ] = None,
    split_fractions: Annotated[
        str, typer.Option(help="Fractions of classes in base, validation, novel.")
    ] = "0.6,0.2,0.2",
    split_seed: Annotated[int, typer.Option(help="Seed of the class split.")] = 0,
    center_from: Annotated[
        str | None,
        typer.Option(
            help="Centre cl2n on the mean of this table/source (or 'base' for the split's base "
            "classes) instead of each episode's support mean."
        ),
    ] = None,
    device: DeviceOption = None,
    dtype: Annotated[str, typer.Option(help="float32, or bfloat16 / float16 on GPUs.")] = "float32",
    per_class: Annotated[
        int,
        typer.Option(
            min=0,
            help="Also show the N hardest classes of the best configuration: each class's "
            "accuracy over every episode (--json lists every class of every row).",
        ),
    ] = 0,
    as_json: JsonOption = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write accuracy vs shots with CI bands to this PNG.")
    ] = None,
    finetune: Annotated[
        bool,
        typer.Option(
            "--finetune",
            help="Text models: also each configuration with the encoder's last layer "
            "fine-tuned on each episode's shots (as `fit --finetune`; 2 shots or more), paired "
            "with the frozen rows episode by episode (all-class: seed by seed). Slow: one "
            "tuning per episode and shot count, so use a budget (e.g. --episodes 100).",
        ),
    ] = False,
    inspect: Annotated[
        bool,
        typer.Option(
            "--inspect",
            help="Append the geometry of the embeddings per normalisation (hubness, anisotropy, "
            "class separation; see `protoshot inspect`): the reason beside the accuracy.",
        ),
    ] = False,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    embedding_column: EmbeddingColumnOption = None,
    labels: LabelsOption = None,
    delimiter: DelimiterOption = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Items per forward pass when embedding.")
    ] = 32,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Evaluate nearest-prototype classification: every configuration on the same episodes.

    Examples:

      protoshot evaluate table.parquet --ways 5 --shots 1,5 --episodes 2000

      protoshot evaluate banking77:test --model minilm --json

      protoshot evaluate banking77:train --test banking77:test --model minilm --protocol all-class --shots 0,1,5,10 --methods prototypes,named-prototypes,linear,auto
    """
    with user_errors():
        report, grid, geometry = _evaluate(
            source, model=with_adapter(model, adapter), protocol=protocol, test=test, ways=ways, shots=shots,
            queries=queries, episodes=episodes, seed=seed, metrics=metrics,
            normalizations=normalizations, methods=methods, class_descriptions=class_descriptions,
            classes=classes, split=split,
            split_fractions=split_fractions, split_seed=split_seed, center_from=center_from,
            device=device, dtype=dtype, plot=plot, batch_size=batch_size,
            columns={
                "text_column": text_column, "label_column": label_column,
                "embedding_column": embedding_column, "labels": labels, "delimiter": delimiter,
            },
            cache=cache_arg(no_cache, cache_dir), inspect=inspect, finetune=finetune,
        )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        title = plain(f"{source} · {report['model'] or 'embeddings'} · {report['protocol']}")
        from rich.console import Console

        Console().print(grid.table(title=title, macro_f1=protocol == "all-class"))
        if per_class:
            Console().print(grid.best().class_table(per_class))
        if geometry is not None:
            Console().print(geometry.table(title="geometry of the embeddings, per normalisation"))
        stderr().print(
            "* best configuration at each shot count; ± is the half-width of the 95% confidence interval"
        )
        if any(r.config.get("transductive") for r in grid):
            stderr().print(
                "rows below the line are transductive (each episode's queries refine its "
                "classes): not comparable with the inductive rows or published numbers"
            )
    if plot is not None:
        stderr().print(f"plot written to {plain(plot)}")


def _evaluate(
    source: str, *, model: str | None, protocol: str, test: str | None, ways: str, shots: str,
    queries: int, episodes: int, seed: int, metrics: str, normalizations: str, methods: str,
    class_descriptions: Path | None, classes: str | None, split: str | None, split_fractions: str, split_seed: int,
    center_from: str | None, device: str | None, dtype: str, plot: Path | None,
    batch_size: int, cache: CacheArg, inspect: bool, columns: dict[str, Any], finetune: bool = False,
) -> tuple[dict[str, Any], Any, Any]:  # fmt: skip
    from dataclasses import replace

    from protoshot import METRICS, NORMALIZATIONS
    from protoshot._validation import check_choice
    from protoshot.evaluation.reports import plot_grid, report_dict
    from protoshot.evaluation.results import GridResult
    from protoshot.evaluation.tables import PROTOCOLS, evaluate_table
    from protoshot.methods import ALL_METHODS
    from protoshot.pipeline import load_embeddings

    method_list = split_list(methods, "method", ALL_METHODS)
    metric_list = split_list(metrics, "metric", METRICS)
    norm_list = split_list(normalizations, "normalization", NORMALIZATIONS)
    shot_list = split_ints(shots, "shots", smallest=0)
    check_choice("protocol", protocol, PROTOCOLS)
    if protocol == "all-class" and test is None:
        raise ValueError("the all-class protocol needs --test (the split to classify)")
    if classes is not None and split is not None:
        raise ValueError("give --classes or --split, not both")
    if center_from == "base" and split is None:
        raise ValueError("--center-from base needs --split (the base classes come from it)")
    if plot is not None and not plot.parent.is_dir():
        raise ValueError(f"cannot write the plot: folder {plot.parent} does not exist")
    n_way = _ways(ways)
    fractions = None if split is None else _fractions(split_fractions)

    def load(where: str, spec: str | None) -> Any:
        return load_embeddings(
            where, spec, cache=cache, batch_size=batch_size, device=device, **columns
        )

    def run(spec: str | None) -> tuple[Any, Any, Any]:
        """The grid of one embedder, and the tables it evaluated."""
        table, _ = load(source, spec)
        made_by = spec or table.model
        if made_by.startswith("adapter:"):  # also a table embedded with an adapter
            _check_unseen(made_by, table, source)
        same_model = spec or table.model or None
        test_table = load(test, same_model)[0] if protocol == "all-class" and test else None
        center = center_from if center_from in (None, "base") else load(center_from, same_model)[0]
        names = _names(table, method_list, class_descriptions, cache=cache, device=device)
        grid = evaluate_table(
            table, protocol=protocol, test=test_table,
            n_way=n_way,
            shots=shot_list, n_query=queries, n_episodes=episodes, seed=seed, metrics=metric_list,
            normalizations=norm_list, methods=method_list, class_embeddings=names,
            classes=_class_names(classes), split=split,
            split_fractions=fractions or (0.6, 0.2, 0.2), split_seed=split_seed, center=center,  # type: ignore[arg-type]
            device=device, dtype=dtype, progress=episodes >= 2000,
        )  # fmt: skip
        return grid, table, test_table

    specs: list[str | None] = list(split_list(model, "model")) if model else [None]
    if len(specs) > 1 and inspect:
        raise ValueError("--inspect describes one embedder's geometry: give one --model")
    if finetune and (len(specs) != 1 or not model):
        raise ValueError("--finetune needs one --model (a text model) and raw texts")
    if finetune and center_from is not None:
        raise ValueError("--center-from is a frozen encoder's mean: it does not go with --finetune")
    if finetune and (classes is not None or split is not None):
        raise ValueError("--finetune evaluates every class of SOURCE: without --classes or --split")
    runs = [run(spec) for spec in specs]
    grid, table, test_table = runs[0]
    if finetune:
        from protoshot.evaluation.results import paired_differences

        tuned = _finetuned(
            str(specs[0]), source, test, table, test_table, shots=shot_list, episodes=episodes,
            sampling={"n_way": n_way, "n_query": queries, "seed": seed},
            grid={"methods": method_list, "metrics": metric_list, "normalizations": norm_list,
                  "dtype": dtype},
            descriptions=class_descriptions, device=device, columns=columns,
        )  # fmt: skip
        merged = sorted([*grid, *tuned], key=lambda r: bool(r.config.get("transductive")))
        grid = paired_differences(GridResult(merged))  # transductive rows stay last, apart
    if len(runs) > 1:  # the same source and seed: every embedder on the same episodes
        grid = GridResult(
            [
                replace(r, config={**r.config, "model": spec})
                for spec, (part, _, _) in zip(specs, runs, strict=True)
                for r in part
            ]
        )
    if plot is not None:
        plot_grid(
            grid, plot, title=f"{source} · {', '.join(t.model or 'embeddings' for _, t, _ in runs)}"
        )
    context = {
        "protocol": protocol,
        "source": source,
        "model": ",".join(t.model for _, t, _ in runs),
        "fingerprint": ",".join(t.fingerprint for _, t, _ in runs),
        "seed": seed,
    }
    geometry = None
    if inspect:  # the embeddings that were evaluated: the test split, or the chosen classes
        from protoshot.evaluation.tables import evaluated_rows
        from protoshot.geometry import inspect_geometry

        shown, rows = table, None
        if test_table is not None:
            shown = test_table
        else:
            rows = evaluated_rows(
                table, classes=_class_names(classes), split=split,
                split_fractions=fractions or (0.6, 0.2, 0.2), split_seed=split_seed,
            )  # fmt: skip
        vectors = shown.vectors if rows is None else shown.vectors[rows]
        labels = shown.labels if rows is None else shown.labels[rows]
        geometry = inspect_geometry(vectors, labels, normalizations=norm_list)
        context["geometry"] = geometry.to_dict()
    return report_dict(grid, **context), grid, geometry


def _finetuned(
    spec: str, source: str, test: str | None, table: Any, test_table: Any, *, shots: list[int],
    episodes: int, sampling: dict[str, Any], grid: dict[str, Any], descriptions: Path | None,
    device: str | None, columns: dict[str, Any],
) -> Any:  # fmt: skip
    """The fine-tuned rows of ``evaluate --finetune``: the texts of SOURCE (and --test) read
    again (a table keeps vectors, not texts), the encoder tuned on each draw's shots."""
    from protoshot._progress import progress_bar
    from protoshot.data import load_source
    from protoshot.evaluation.finetuned import finetuned_grid
    from protoshot.pipeline import is_table

    readers = {k: columns[k] for k in ("text_column", "label_column", "delimiter")}
    texts = []
    for where, embedded in ((source, table), (test, test_table)):
        if where is None or embedded is None:
            continue
        if is_table(where, columns.get("embedding_column")):
            raise ValueError(f"--finetune needs texts, and {where} is an embedding table")
        samples = load_source(where, **readers)
        if len(samples.items) != len(embedded.labels):
            raise ValueError(f"{where} changed while it was being evaluated")
        texts.append(list(samples.items))
    names = _descriptions(table, grid["methods"], descriptions)
    tuned_shots = [k for k in shots if k >= 2]
    if len(tuned_shots) < len(shots):
        stderr().print("--finetune: shot counts below 2 are not tuned (nothing to learn from)")
    with progress_bar(None, episodes * len(tuned_shots), "fine-tuning per draw") as advance:
        return finetuned_grid(
            spec, texts[0], table.labels, shots=shots, n_episodes=episodes, names=names,
            test_texts=texts[1] if test_table is not None else None,
            test_labels=None if test_table is None else test_table.labels,
            device=device, progress=advance, **sampling, **grid,
        )  # fmt: skip


def _descriptions(
    table: Any, methods: list[str], descriptions: Path | None
) -> dict[Any, str] | None:
    """--class-descriptions by class of ``table`` (empty: the classes' names), or ``None`` when
    no method uses names; a description of no class is an error."""
    import numpy as np

    from protoshot.labels import labels_like
    from protoshot.methods import NAMED_METHODS
    from protoshot.pipeline import read_descriptions

    if descriptions is None and not any(m in (*NAMED_METHODS, "auto") for m in methods):
        return None
    classes = np.asarray(table.classes)
    texts = read_descriptions(descriptions) if descriptions is not None else {}
    labels = dict(zip(labels_like(list(texts), classes), texts.values(), strict=True))
    unknown = [label for label in labels if label not in set(classes.tolist())]
    if unknown:
        raise ValueError(
            f"--class-descriptions names unknown classes: {', '.join(map(str, unknown[:10]))}"
        )
    return labels


def _names(
    table: Any, methods: list[str], descriptions: Path | None, *, cache: CacheArg,
    device: str | None,
) -> dict[Any, Any] | None:  # fmt: skip
    """Class-name embeddings for the methods that use them, by the table's own text model."""
    import numpy as np

    from protoshot.pipeline import class_name_embeddings, embedder_for

    labels = _descriptions(table, methods, descriptions)
    if labels is None or not table.model:
        if descriptions is not None:
            raise ValueError("--class-descriptions needs a table embedded by a known text model")
        return None
    embedder = embedder_for(table.model, device=device, cache=cache)
    names, skipped = class_name_embeddings(
        np.asarray(table.classes).tolist(), embedder, descriptions=labels, cache=cache
    )
    if skipped and embedder.modality == "text":
        stderr().print(
            f"{len(skipped)} classes have no name to embed (e.g. {skipped[0]!r}); "
            "the named methods need one for every class"
        )
    return names if names and not skipped else None


def _ways(text: str) -> int | Literal["all"]:
    if text == "all":
        return "all"
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"ways must be a positive integer or 'all', got {text!r}")
    return int(text)


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ValueError(f"--split-fractions must be three numbers like 0.6,0.2,0.2, got {text!r}")
    return values[0], values[1], values[2]


def _class_names(classes: str | None) -> list[str] | None:
    """``--classes``: comma-separated names, or ``@FILE`` with one name per line."""
    if classes is None:
        return None
    names = (
        Path(classes[1:]).read_text().splitlines()
        if classes.startswith("@")
        else classes.split(",")
    )
    return [n.strip() for n in names if n.strip()]


def _check_unseen(spec: str, table: Any, source: str) -> None:
    """Refuse to evaluate an adapter on classes it was trained on (a silent leak)."""
    from protoshot.adapters import Adapter

    folder = spec.removeprefix("adapter:").partition("?")[0]
    Adapter.load(folder).check_disjoint(table.labels, source)
