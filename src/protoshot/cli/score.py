"""``protoshot score``: how well a fitted model does on labelled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from protoshot.cli._common import (
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
    TextColumnOption,
    cache_arg,
    plain,
    stderr,
    user_errors,
)


def register(app: typer.Typer) -> None:
    """Add ``score`` to ``app``."""
    app.command("score")(score_command)


def score_command(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by `protoshot fit`.")],
    data: Annotated[
        str,
        typer.Argument(
            help="Labelled data (CSV/TSV/JSONL/Parquet, image folder, saved HF dataset, "
            "benchmark:split) or an embedding table of the model's embedder."
        ),
    ],
    unknown_label: Annotated[
        str | None,
        typer.Option(
            help="The label of out-of-scope rows (true class outside the model): right when "
            "rejected. Adds out-of-scope recall and the false-accept rate."
        ),
    ] = None,
    confusion: Annotated[
        Path | None,
        typer.Option(help="Write the confusion matrix as a PNG (up to 100 classes)."),
    ] = None,
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
    """Score MODEL_DIR on labelled DATA: accuracy (95% CI), macro-F1, per-class precision and
    recall, NLL and calibration error, the most confused pairs, and the open set.

    A row is right when accepted with its true class, or when its class is --unknown-label
    and the model rejects it (see `calibrate`).
    """
    with user_errors():
        from protoshot.model import FewShotModel
        from protoshot.pipeline import labelled_embeddings
        from protoshot.scoring import PLOT_CLASSES, plot_confusion

        if confusion is not None and not confusion.parent.is_dir():
            raise ValueError(
                f"cannot write the confusion matrix: folder {confusion.parent} does not exist"
            )

        cache = cache_arg(no_cache, cache_dir)
        few = FewShotModel.load(
            model_dir, device=device, cache=cache, batch_size=batch_size,
            allow_download=allow_download,
        )  # fmt: skip
        table = labelled_embeddings(
            data, few.embedder, text_column=text_column, label_column=label_column,
            embedding_column=embedding_column, labels=labels, delimiter=delimiter, cache=cache,
            batch_size=batch_size,
        )  # fmt: skip
        report = few.score_report_embeddings(
            table.vectors, table.labels, unknown_label=unknown_label
        )
        drawn = confusion is not None and len(report.labels) - 1 <= PLOT_CLASSES
        if confusion is not None and drawn:
            plot_confusion(report, confusion, title=f"{model_dir.name} on {Path(data).name}")
        elif confusion is not None:
            stderr().print(
                f"{len(report.labels) - 1} classes are too many for a readable confusion matrix "
                f"(at most {PLOT_CLASSES}): the most confused pairs are listed instead"
            )
    if as_json:
        typer.echo(json.dumps({"model": str(model_dir), "data": data, **report.to_dict()}))
        return
    _print_report(report, few.threshold)
    if drawn:
        stderr().print(f"confusion matrix -> {plain(confusion)}")


def _print_report(report: Any, threshold: float | None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    low, high = report.accuracy_ci
    lines = [
        f"accuracy {_pct(report.accuracy)} (95% CI {_pct(low)}-{_pct(high)}) on {report.n} rows, "
        f"macro-F1 {_pct(report.macro_f1)}",
    ]
    if report.nll is not None:
        lines.append(
            f"calibration: NLL {report.nll:.3f}, expected calibration error {_pct(report.ece)}"
        )
    if threshold is not None:
        lines.append(
            f"threshold {threshold:.4f}: accepts {_pct(report.accept_rate)} of rows; "
            f"known classes {_pct(report.known_accuracy)} right"
        )
    if report.n_unknown:
        lines.append(
            f"out of scope: {report.n_unknown} rows, {_pct(report.unknown_recall)} rejected "
            f"(false-accept rate {_pct(report.false_accept_rate)})"
        )
    for line in lines:
        out.print(plain(line))
    table = Table(title="per class (worst F1 first)")
    for name in ("class", "precision", "recall", "F1", "rows"):
        table.add_column(name, justify="left" if name == "class" else "right", overflow="fold")
    for c in sorted(report.per_class, key=lambda c: (c.f1, str(c.label))):
        table.add_row(plain(c.label), _pct(c.precision), _pct(c.recall), _pct(c.f1), str(c.support))
    out.print(table)
    if report.confused_pairs:
        pairs = "; ".join(f"{_name(t)} -> {_name(p)} ({n})" for t, p, n in report.confused_pairs)
        out.print(plain(f"most confused (true -> answered): {pairs}"))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _name(label: Any) -> str:
    return "unknown" if label is None else str(label)
