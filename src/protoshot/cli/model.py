"""``protoshot fit / predict / add / remove / calibrate``: a few-shot model people deploy."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from protoshot.cli._common import (
    AdapterOption,
    AllowDownloadOption,
    BatchSizeOption,
    CacheDirOption,
    DelimiterOption,
    DeviceOption,
    EmbeddingColumnOption,
    JsonOption,
    LabelColumnOption,
    LabelsOption,
    NoCacheOption,
    SourceArgument,
    TextColumnOption,
    cache_arg,
    plain,
    stderr,
    user_errors,
    with_adapter,
)
from protoshot.store import folder_lock, is_model_folder

FORMATS = ("table", "jsonl", "csv")
ModelDir = Annotated[Path, typer.Argument(help="Model folder written by `protoshot fit`.")]
Inputs = Annotated[
    list[str] | None,
    typer.Argument(
        help="Image files or folders (image models); for text models, tables (CSV, TSV, "
        "JSONL, Parquet: the text column is classified, other columns such as an id or a true "
        "label are passed through), text files with one text per line, or - for stdin; or "
        "embedding tables of the model's embedder (`protoshot embed` output)."
    ),
]
TextOption = Annotated[
    list[str] | None, typer.Option("--text", "-t", help="A text to use as is (repeatable).")
]


def register(app: typer.Typer) -> None:
    """Add the model commands to ``app``."""
    app.command("fit")(fit_command)
    app.command("predict")(predict_command)
    app.command("add")(add_command)
    app.command("remove")(remove_command)
    app.command("calibrate")(calibrate_command)
    app.command("compact")(compact_command)


def fit_command(
    support: SourceArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Embedder spec (minilm, efficientnet-lite0, st:..., hf:...); default: the "
            "--config report's.",
        ),
    ] = None,
    adapter: AdapterOption = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="An `evaluate --json` report: fit with the configuration it found best at the "
            "shot count nearest SUPPORT's (flags given here override it)."
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="auto (cross-validation on your shots picks prototypes or a fitted head, with "
            "class names as a prior for text), prototypes, named-prototypes, linear, named-linear, "
            "mahalanobis (a shared covariance, shrunk). Default: auto, or --config's."
        ),
    ] = None,
    class_descriptions: Annotated[
        Path | None,
        typer.Option(
            help="CSV of label,text: describe classes (text models) instead of their names."
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="Prototype methods: sqeuclidean (default), euclidean, cosine or dot."),
    ] = None,
    normalization: Annotated[
        str | None,
        typer.Option(help="none, l2 or cl2n (default: cl2n; none for plain prototypes)."),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="Prototype methods: softmax temperature (default: fitted on your shots; with "
            "one shot per class 1, cosine 0.1, on normalised embeddings 0.2 / 0.1)."
        ),
    ] = None,
    finetune: Annotated[
        bool,
        typer.Option(
            "--finetune",
            help="Text models (minilm, st:...): first fine-tune the encoder's last layer on your "
            "shots (10 epochs: from seconds to a minute or two on a CPU), then fit --method on "
            "its vectors. The tuned layer is saved in OUTPUT; `add` embeds new shots with it "
            "(no re-tuning).",
        ),
    ] = False,
    reject: Annotated[
        bool,
        typer.Option(
            "--reject",
            help="Answer 'unknown' to inputs unlike every class, with a threshold from your own "
            "shots (it accepts 90% of them, each left out in turn); see `calibrate` for others.",
        ),
    ] = False,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    embedding_column: EmbeddingColumnOption = None,
    labels: LabelsOption = None,
    delimiter: DelimiterOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a model already in OUTPUT.")
    ] = False,
    batch_size: BatchSizeOption = 32,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Fit a classifier on the labelled examples in SUPPORT and save it to OUTPUT.

    By default (--method auto) cross-validation on your own shots picks nearest prototypes or a
    softmax head fitted from them; with a text model each class's name ("card_arrival" ->
    "card arrival") or its --class-descriptions entry counts as a prior. With --config, the
    settings an `evaluate --json` run found best (on other data) are used instead.
    """
    start = time.perf_counter()
    with user_errors():
        import numpy as np

        from protoshot.embedders.tuned import TunedEmbedder
        from protoshot.estimators import create_estimator
        from protoshot.evaluation.reports import chosen_config
        from protoshot.labels import labels_like
        from protoshot.model import FewShotModel
        from protoshot.pipeline import embedder_for, labelled_embeddings, read_descriptions

        if is_model_folder(output) and not force:
            raise FileExistsError(f"{output} already holds a model; pass --force to replace it")
        model = with_adapter(model, adapter)
        report = _read_report(config) if config is not None else None
        if report is not None and not model:
            model = str(report.get("model") or "")
            if "," in model:
                raise ValueError(
                    f"{config} compares several embedders ({model}): pass --model with the one "
                    "to fit"
                )
        if not model:
            raise ValueError("pass --model (the embedder), or a --config report that names one")
        cache = cache_arg(no_cache, cache_dir)
        embedder = embedder_for(model, device=device, cache=cache)
        columns = dict(text_column=text_column, label_column=label_column, delimiter=delimiter)
        table = labelled_embeddings(
            support, embedder, embedding_column=embedding_column, labels=labels, cache=cache,
            batch_size=batch_size, **columns,
        )  # fmt: skip
        chosen: dict[str, Any] = {}
        if report is not None and config is not None:
            _check_report_model(report, embedder, config)
            shots = float(np.median(np.unique(table.labels, return_counts=True)[1]))
            chosen = chosen_config(report, shots, embedder.spec)
            stderr().print(
                plain(f"from {config}: " + ", ".join(f"{k} {v}" for k, v in chosen.items()))
            )
        if finetune or chosen.pop("finetune", False):  # asked, or the report's best was tuned
            embedder, table = _fine_tuned(
                support, embedder, table, output, device, columns, embedding_column,
                cache=cache, batch_size=batch_size,
            )  # fmt: skip
        chosen_method = chosen.pop("method", None)
        if method and method != chosen_method:
            chosen = {}  # the report's settings belong to another method
        method = method or chosen_method or "auto"
        flags = {"metric": metric, "normalization": normalization, "temperature": temperature}
        options = _method_options(method, chosen, flags)
        classifier = create_estimator(method, device=device, **options)
        few = FewShotModel(embedder, classifier, cache=cache, batch_size=batch_size)
        descriptions = None
        if class_descriptions is not None:
            texts = read_descriptions(class_descriptions)
            described = labels_like(list(texts), np.unique(table.labels))
            descriptions = dict(zip(described, texts.values(), strict=True))
        few.fit_embeddings(table.vectors, table.labels, class_descriptions=descriptions)
        if reject:
            few.calibrate_on_shots()
        with folder_lock(output, "protoshot fit"):
            previous = _encoder_named(output)
            if isinstance(embedder, TunedEmbedder):
                embedder.save()
            few.save(output, overwrite=force)
            _remove_encoders(output, keep={previous, _encoder_named(output)})
    counts = few.class_counts().values()
    stderr().print(
        f"{len(counts)} classes, {min(counts)}-{max(counts)} shots each, dim {embedder.dim}, "
        f"method {few.method}{_selection(few)}, {time.perf_counter() - start:.1f} s -> "
        f"{plain(output)}"
    )
    if few.rejection is not None:
        stderr().print(f"rejects below similarity {few.threshold:.4f}: {few.rejection.rule}")


def _fine_tuned(
    support: str,
    embedder: Any,
    table: Any,
    output: Path,
    device: str | None,
    columns: dict[str, Any],
    embedding_column: str | None,
    **embedding: Any,
) -> tuple[Any, Any]:
    """The encoder fine-tuned on SUPPORT's texts and SUPPORT embedded by it; or the frozen
    ``embedder`` and its ``table`` when tuning is not done (one shot per class, a loss that
    diverges), said on stderr. A model that cannot be tuned, or an adapter, is an error."""
    from protoshot.data import load_source
    from protoshot.finetune import NotTuned, finetuned
    from protoshot.pipeline import embed_samples, is_table

    if embedder.spec.startswith("adapter:"):
        raise ValueError("fine-tuning and an adapter do not go together: pick one")
    if is_table(support, embedding_column):
        raise ValueError(f"--finetune needs texts, and {support} is an embedding table")
    samples = load_source(support, **columns)
    try:
        tuned = finetuned(embedder.spec, samples.items, samples.labels, output, device=device)
    except NotTuned as err:
        stderr().print(plain(f"not fine-tuned: {err}; fitting the frozen {embedder.spec}"))
        return embedder, table
    stderr().print(
        f"fine-tuned the last layer in {tuned.encoder.seconds:.1f} s (loss "
        f"{tuned.encoder.history[0]:.3f} -> {tuned.encoder.history[-1]:.3f})"
    )
    return tuned, embed_samples(samples, tuned, progress=None, **embedding)[0]


def _encoder_named(output: Path) -> str | None:
    """The tuned-encoder folder OUTPUT's model names (``None``: none, or no model)."""
    from protoshot.embedders.tuned import PREFIX
    from protoshot.store import read_config

    if not is_model_folder(output):
        return None
    spec = str(read_config(output).get("metadata", {}).get("embedder", {}).get("spec", ""))
    return Path(spec.removeprefix(PREFIX)).name if spec.startswith(PREFIX) else None


def _remove_encoders(output: Path, keep: set[str | None]) -> None:
    """Tuned encoders of older fits in OUTPUT: those written by `fit --finetune` (named
    ``encoder-<12 hex>``, holding ``encoder.json``) that neither the model nor the one it
    replaced names (a process that read the old model may still be loading its encoder)."""
    import re
    import shutil

    for folder in output.glob("encoder-*"):
        written = (
            re.fullmatch(r"encoder-[0-9a-f]{12}", folder.name)
            and (folder / "encoder.json").is_file()
        )
        if written and folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def _method_options(method: str, chosen: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """Estimator options: the --config report's settings that ``method`` takes, overridden by
    the flags given; a flag the method does not take is an error."""
    from protoshot.estimators import create_estimator

    params = create_estimator(method).get_params()
    options = {k: v for k, v in chosen.items() if k in params}
    for name, value in flags.items():
        if value is None:
            continue
        if name not in params or (name != "normalization" and "metric" not in params):
            raise ValueError(f"--{name} applies to the prototype methods, not {method}")
        options[name] = value
    return options


def _read_report(path: Path) -> dict[str, Any]:
    """An ``evaluate --json`` report, read with a clear error."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the --config report {path}: {err}") from None
    if not isinstance(report, dict):
        raise ValueError(f"{path} is not a `protoshot evaluate --json` report")
    return report


def _check_report_model(report: dict[str, Any], embedder: Any, path: Path) -> None:
    """Warn when the report's settings were chosen on another embedder's vectors."""
    import warnings

    fingerprint = report.get("fingerprint")
    if fingerprint and embedder.fingerprint not in str(fingerprint).split(","):
        warnings.warn(
            f"{path} was evaluated with {report.get('model') or 'another embedder'}, not "
            f"{embedder.spec}: its best settings may not carry over",
            UserWarning,
            stacklevel=2,
        )


def _selection(few: Any) -> str:
    """How ``auto`` chose, in words (empty for a fixed method)."""
    selection = getattr(few.classifier, "selection_", None)
    if not selection:
        return ""
    held = selection.get("held_out_accuracy") or {}
    scores = ", ".join(f"{name} {100 * acc:.1f}%" for name, acc in held.items())
    return f" (by {selection['how']}{': held-out accuracy ' + scores if scores else ''})"


def predict_command(
    model_dir: ModelDir,
    inputs: Inputs = None,
    text: TextOption = None,
    text_column: TextColumnOption = None,
    embedding_column: EmbeddingColumnOption = None,
    delimiter: DelimiterOption = None,
    top_k: Annotated[int, typer.Option(min=1, help="Classes to list per input.")] = 1,
    output_format: Annotated[str, typer.Option("--format", help="table, jsonl or csv.")] = "table",
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines on stdout (the same as --format jsonl).")
    ] = False,
    transductive: Annotated[
        str | None,
        typer.Option(
            help="soft-kmeans or sinkhorn: classify the inputs together, letting the batch "
            "refine the classes (answers depend on the whole batch; sinkhorn assumes the "
            "classes in equal shares)."
        ),
    ] = None,
    batch_size: BatchSizeOption = 32,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    allow_download: AllowDownloadOption = False,
) -> None:
    """Classify inputs: label, probability and the top classes, as a table, JSON lines or CSV."""
    with user_errors():
        if as_json and output_format not in ("table", "jsonl"):
            raise ValueError(
                f"--json prints JSON lines; it cannot be combined with --format {output_format}"
            )
        output_format = "jsonl" if as_json else output_format
        if output_format not in FORMATS:
            raise ValueError(
                f"unknown format {output_format!r}; expected one of: {', '.join(FORMATS)}"
            )
        few = _load(model_dir, device, cache_dir, no_cache, batch_size, allow_download)
        from protoshot.data import read_inputs

        vectors, names, columns = _embedded_inputs(few, inputs or [], text or [], embedding_column)
        if vectors is None:
            items, names, columns = read_inputs(
                inputs or [], text or [], few.embedder.modality, text_column=text_column,
                delimiter=delimiter,
            )  # fmt: skip
            vectors = few.embed(items)
        if transductive is None:
            predictions = few.predict_embeddings(vectors, top_k=top_k)
        else:
            predictions = few.predict_transductive_embeddings(
                vectors, method=transductive, top_k=top_k
            )
            stderr().print(f"transductive ({transductive}): each answer depends on the whole batch")
    rows = [
        {"input": name, **({"columns": extra} if extra else {}), **p.to_dict()}
        for name, extra, p in zip(names, columns, predictions, strict=True)
    ]
    if output_format == "jsonl":
        typer.echo("\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
    elif output_format == "csv":
        typer.echo(_csv(rows, top_k), nl=False)
    else:
        _print_table(rows, top_k)


def add_command(
    model_dir: ModelDir,
    label: Annotated[str, typer.Argument(help="The class to add shots to (created if new).")],
    inputs: Inputs = None,
    text: TextOption = None,
    text_column: TextColumnOption = None,
    delimiter: DelimiterOption = None,
    description: Annotated[
        str | None,
        typer.Option(
            help="Describe the class in words (text models): with no examples it is created "
            "from the description alone (zero-shot, for methods that use names)."
        ),
    ] = None,
    batch_size: BatchSizeOption = 32,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    allow_download: AllowDownloadOption = False,
) -> None:
    """Add examples (or a description) of LABEL to a model: an exact update, saved durably as
    one journal entry of its own size."""
    with user_errors(), folder_lock(model_dir, "protoshot add"):
        few = _load(model_dir, device, cache_dir, no_cache, batch_size, allow_download)
        from protoshot.data import read_inputs

        items: list[Any] = []
        if inputs or text or description is None:
            items, _, _ = read_inputs(
                inputs or [], text or [], few.embedder.modality, text_column=text_column,
                delimiter=delimiter,
            )  # fmt: skip
        new = label not in {str(c) for c in few.classes}
        if items:
            few.add_examples(items, [label] * len(items))
        if description is not None:
            few.add_descriptions({label: description})
        few.commit(model_dir)
    counts = {str(k): v for k, v in few.class_counts().items()}
    described = ", described" if description is not None else ""
    stderr().print(
        plain(
            f"{'new class' if new else 'class'} {label!r}: {counts[label]} shots "
            f"({len(items)} added{described}); method {few.method}{_close_name(label, counts, new)}"
        )
    )


def _embedded_inputs(
    few: Any, inputs: list[str], texts: list[str], embedding_column: str | None
) -> tuple[Any, list[str], list[dict[str, Any]]]:
    """Vectors, names and columns when the inputs are embedding tables of the model's embedder
    (``protoshot embed`` output: nothing is embedded again); ``None`` vectors for raw inputs."""
    import numpy as np

    from protoshot.pipeline import embedded_table

    tables = [
        embedded_table(path, few.embedder, embedding_column=embedding_column) for path in inputs
    ]
    if not any(t is not None for t in tables):
        return None, [], []
    if texts or any(t is None for t in tables):
        raise ValueError("give embedding tables alone, or raw inputs (texts, files), not both")
    names = [str(i) for t in tables if t is not None for i in t.ids]
    columns = [{"label": lab} for t in tables if t is not None for lab in t.labels.tolist()]
    return np.concatenate([t.vectors for t in tables if t is not None]), names, columns


def _close_name(label: str, counts: dict[str, int], new: bool) -> str:
    """For a new class, the existing one it may have meant (a typo creates a class silently)."""
    import difflib

    others = [c for c in counts if c != label]
    close = difflib.get_close_matches(label, others, n=1, cutoff=0.85) if new else []
    return f" (did you mean the existing class {close[0]!r}?)" if close else ""


def remove_command(
    model_dir: ModelDir,
    labels: Annotated[list[str], typer.Argument(help="Classes to remove.")],
) -> None:
    """Remove classes from a model (an exact update), saved durably as one journal entry."""
    with user_errors(), folder_lock(model_dir, "protoshot remove"):
        from protoshot.model import remove_saved_classes

        remaining = remove_saved_classes(model_dir, labels)
    stderr().print(plain(f"removed {', '.join(labels)}; {len(remaining)} classes remain"))


def compact_command(model_dir: ModelDir) -> None:
    """Fold MODEL_DIR's update journal into a new snapshot now.

    Updates are journal entries; the journal is folded by itself once it outgrows the snapshot
    (and 4 MiB). Compact to ship a folder as one snapshot, or to start it without a replay.
    """
    with user_errors(), folder_lock(model_dir, "protoshot compact"):
        from protoshot.estimators import load_estimator
        from protoshot.store import read_model

        replayed = len(read_model(model_dir).changes)
        load_estimator(model_dir).save(model_dir, overwrite=True)
    stderr().print(plain(f"{model_dir}: {replayed} journaled changes folded into a new snapshot"))


def calibrate_command(
    model_dir: ModelDir,
    data: Annotated[
        str | None,
        typer.Argument(
            help="Optional. Held-out labelled data with classes the model knows AND classes it "
            "does not (for --far); or unlabelled traffic (with --expected-unknown-rate). "
            "Without it the threshold comes from the model's own shots."
        ),
    ] = None,
    far: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.999,
            help="With labelled DATA: the target false-accept rate, the share of unknown-class "
            "inputs still accepted.",
        ),
    ] = 0.05,
    expected_unknown_rate: Annotated[
        float | None,
        typer.Option(
            help="DATA is unlabelled traffic of which this share is out of scope (from your "
            "logs): reject that share of it."
        ),
    ] = None,
    accept: Annotated[
        float,
        typer.Option(help="Without DATA: the share of the model's own shots to accept."),
    ] = 0.9,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report the threshold without saving it.")
    ] = False,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    embedding_column: EmbeddingColumnOption = None,
    labels: LabelsOption = None,
    delimiter: DelimiterOption = None,
    batch_size: BatchSizeOption = 32,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    allow_download: AllowDownloadOption = False,
    as_json: JsonOption = False,
) -> None:
    """Choose the 'unknown' threshold on the similarity to the best class, and save it in the
    model.

    Three ways: from the model's own shots (no DATA: the default, no out-of-scope example
    needed); from unlabelled traffic and its known out-of-scope share (--expected-unknown-rate);
    from labelled held-out data with unknown classes (--far). The threshold keeps its meaning
    when classes are added later.
    """
    with user_errors(), folder_lock(model_dir, "protoshot calibrate"):
        from dataclasses import asdict

        from protoshot.data import read_inputs
        from protoshot.pipeline import labelled_embeddings

        few = _load(model_dir, device, cache_dir, no_cache, batch_size, allow_download)
        if data is None:
            if expected_unknown_rate is not None:
                raise ValueError("--expected-unknown-rate needs DATA: unlabelled traffic")
            calibration = few.calibrate_on_shots(accept=accept)
        elif expected_unknown_rate is not None:
            vectors, _, _ = _embedded_inputs(few, [data], [], embedding_column)
            if vectors is None:
                items, _, _ = read_inputs(
                    [data], [], few.embedder.modality, text_column=text_column,
                    delimiter=delimiter,
                )  # fmt: skip
                vectors = few.embed(items)
            calibration = few.calibrate_on_traffic_embeddings(
                vectors, unknown_rate=expected_unknown_rate
            )
        else:
            if Path(data).suffix.lower() == ".txt":
                raise ValueError(
                    f"{data} holds no labels: for unlabelled traffic pass --expected-unknown-rate"
                )
            table = labelled_embeddings(
                data, few.embedder, text_column=text_column, label_column=label_column,
                embedding_column=embedding_column, labels=labels, delimiter=delimiter,
                cache=few.cache, batch_size=batch_size,
            )  # fmt: skip
            calibration = few.calibrate_embeddings(
                table.vectors, table.labels, false_accept_rate=far
            )
        if not dry_run:
            few.commit(model_dir)
    if as_json:
        typer.echo(json.dumps({**asdict(calibration), "saved": not dry_run}))
        return
    c = calibration
    rates = ""
    if c.false_accept_rate is not None:
        rates = (
            f"; on DATA it accepts {100 * c.false_accept_rate:.1f}% of {c.n_unknown} unknown-class "
            f"inputs and {100 * c.known_accept_rate:.1f}% of {c.n_known} known ones "
            f"({100 * c.known_accuracy:.1f}% accepted and right)"
        )
    where = "not saved (--dry-run)" if dry_run else f"saved in {plain(model_dir)}"
    stderr().print(f"threshold {c.threshold:.4f}: {plain(c.rule)}{rates}; {where}")


def _load(
    model_dir: Path,
    device: str | None,
    cache_dir: Path | None,
    no_cache: bool,
    batch_size: int,
    allow_download: bool = False,
) -> Any:
    from protoshot.model import FewShotModel

    return FewShotModel.load(
        model_dir, device=device, cache=cache_arg(no_cache, cache_dir), batch_size=batch_size,
        allow_download=allow_download, deferred=True,
    )  # fmt: skip


def _csv(rows: list[dict[str, Any]], top_k: int) -> str:
    """One line per input; the input table's other columns come first, prefixed ``input_``."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    passed = list(dict.fromkeys(k for row in rows for k in row.get("columns", {})))
    header = [*(f"input_{k}" for k in passed), "input", "label", "probability", "rejected"]
    for i in range(2, top_k + 1):
        header += [f"label_{i}", f"probability_{i}"]
    writer.writerow(header)
    for row in rows:
        extra = [v for t in row["top_k"][1:] for v in (t["label"], f"{t['probability']:.6f}")]
        label = "" if row["label"] is None else row["label"]
        given = [row.get("columns", {}).get(k, "") for k in passed]
        writer.writerow(
            [*given, row["input"], label, f"{row['probability']:.6f}", row["rejected"], *extra]
        )
    return buf.getvalue()


def _print_table(rows: list[dict[str, Any]], top_k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("input", overflow="fold", max_width=50)
    table.add_column("label")
    table.add_column("p", justify="right")
    if top_k > 1:
        table.add_column("next")
    for row in rows:
        label = "[yellow]unknown[/]" if row["rejected"] else plain(row["label"])
        cells = [plain(row["input"]), label, f"{row['probability']:.3f}"]
        if top_k > 1:
            cells.append(
                plain(", ".join(f"{t['label']} ({t['probability']:.2f})" for t in row["top_k"][1:]))
            )
        table.add_row(*cells)
    Console().print(table)
