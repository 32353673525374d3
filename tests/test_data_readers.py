"""Readers of text tables, image folders and saved Hugging Face datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protoshot.data import (
    load_source,
    read_hf_dataset,
    read_image_folder,
    read_table,
    read_text_column,
)
from tests._embed_fixtures import write_images


# -- text tables -------------------------------------------------------------------------------
def _write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        header = sep.join(rows[0])
        lines = [sep.join(f'"{v}"' if sep == "," else str(v) for v in row.values()) for row in rows]
        path.write_text("\n".join([header, *lines]) + "\n")
    return path


ROWS = [
    {"Utterance": "hello, there", "intent": "greet", "extra": 1},
    {"Utterance": "bye", "intent": "leave", "extra": 2},
    {"Utterance": "hi", "intent": "greet", "extra": 3},
]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_read_table_detects_common_column_names(tmp_path: Path, suffix: str) -> None:
    samples = read_table(_write_rows(tmp_path / f"t{suffix}", ROWS))
    assert samples.items == ["hello, there", "bye", "hi"]
    assert samples.labels.tolist() == ["greet", "leave", "greet"]
    assert samples.ids.tolist() == ["0", "1", "2"] and samples.modality == "text"
    assert samples.classes == ["greet", "leave"]


def test_read_table_with_named_columns(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "t.jsonl", ROWS)
    samples = read_table(path, text_column="intent", label_column="extra")
    assert samples.items == ["greet", "leave", "greet"] and samples.labels.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match=r"no text column 'body'; columns: \['Utterance'"):
        read_table(path, text_column="body")


def test_read_table_without_a_detectable_column_lists_the_columns(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "t.csv", [{"body": "x", "intent": "a"}])
    with pytest.raises(ValueError, match=r"no text column: expected one of .*columns: \['body'"):
        read_table(path)


def test_read_table_rejects_bad_rows_and_files(tmp_path: Path) -> None:
    missing = _write_rows(tmp_path / "m.jsonl", [{"text": "a", "label": None}])
    with pytest.raises(ValueError, match=r"m.jsonl, row 1: the label is missing"):
        read_table(missing)
    numeric = _write_rows(tmp_path / "n.jsonl", [{"text": 5, "label": "a"}])
    with pytest.raises(ValueError, match="row 1: text must be a string, got 5"):
        read_table(numeric)
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"text": "a", "label": "x"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"b.jsonl, line 2: not valid JSON"):
        read_table(broken)
    with pytest.raises(ValueError, match=r"cannot read .*t.xlsx: expected a .csv"):
        read_table(tmp_path / "t.xlsx")


def test_non_utf8_text_is_decoded_as_latin1_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nCita Rom\xe1ntica,music\n".encode("latin-1"))
    with pytest.warns(UserWarning, match=r"not valid UTF-8 \(byte 0xe1 at offset 19\)"):
        samples = read_table(path)
    assert samples.items == ["Cita Romántica"]
    assert read_table(path, encoding="cp1252").items == ["Cita Romántica"]


# -- image folders -----------------------------------------------------------------------------
def test_image_folder_reads_classes_and_skips_bad_files_up_front(tmp_path: Path) -> None:
    root = write_images(tmp_path / "imgs", {"cat": 3, "dog": 2, "empty": 0}, mode="1")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / "broken.png").write_bytes(b"garbage")
    (root / "stray.png").write_bytes(b"")
    (root / ".hidden").mkdir()
    with pytest.warns(UserWarning, match=r"skipped 4 inputs .*notes.txt: not an image file"):
        samples = read_image_folder(root)
    assert samples.modality == "image" and len(samples) == 5
    assert samples.classes == ["cat", "dog"]
    assert samples.ids.tolist()[:2] == ["cat/000.png", "cat/001.png"]
    assert all(isinstance(item, Path) for item in samples.items)
    reasons = " | ".join(samples.skipped)
    assert "broken.png: unreadable image" in reasons and "empty: empty class folder" in reasons
    assert "stray.png: not in a class folder" in reasons


def test_image_folder_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no images under"):
        read_image_folder(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        read_image_folder(tmp_path / "missing")


# -- Hugging Face datasets ---------------------------------------------------------------------
def test_hf_dataset_saved_to_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    train = datasets.Dataset.from_dict(
        {"sentence": ["bad", "good", "fine"], "label": [0, 1, 1]}, features=features
    )
    test = datasets.Dataset.from_dict({"sentence": ["meh"], "label": [0]}, features=features)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(tmp_path / "dd")
    train.save_to_disk(tmp_path / "single")

    with pytest.raises(ValueError, match=r"holds the splits train, test: name one .*dd:train"):
        load_source(tmp_path / "dd")  # never train and test merged by accident
    both = load_source(f"{tmp_path / 'dd'}:all")
    assert both.items == ["bad", "good", "fine", "meh"]
    assert both.labels.tolist() == ["neg", "pos", "pos", "neg"]
    assert both.ids.tolist() == ["train/0", "train/1", "train/2", "test/0"]
    assert load_source(f"{tmp_path / 'dd'}:test").items == ["meh"]
    assert read_hf_dataset(tmp_path / "single").labels.tolist() == ["neg", "pos", "pos"]
    with pytest.raises(ValueError, match=r"no split 'dev'; splits: \['train', 'test'\]"):
        read_hf_dataset(tmp_path / "dd", split="dev")


def test_hf_dataset_with_an_image_column(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    images = [Image.new("L", (8, 8), value) for value in (0, 128)]
    dataset = datasets.Dataset.from_dict({"image": images, "label": ["a", "b"]})
    dataset.save_to_disk(tmp_path / "ds")
    samples = load_source(tmp_path / "ds")
    assert samples.modality == "image" and samples.labels.tolist() == ["a", "b"]
    assert samples.items[1].getpixel((0, 0)) == 128


def test_class_descriptions_file(tmp_path) -> None:
    from protoshot.pipeline import read_descriptions

    path = tmp_path / "d.csv"
    path.write_text('label,text\ncard_arrival,"my card, where is it"\n\nrefund, money back \n')
    assert read_descriptions(path) == {
        "card_arrival": "my card, where is it",
        "refund": "money back",
    }
    path.write_text("card_arrival\n")
    with pytest.raises(ValueError, match="every line must be 'label,text'; lines \\[1\\]"):
        read_descriptions(path)
    with pytest.raises(ValueError, match="cannot read class descriptions"):
        read_descriptions(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("card_arrival", "card arrival"),
        ("CardArrival", "card arrival"),
        ("card-arrival", "card arrival"),
        ("ATMSupport", "atm support"),
        ("getWeather", "get weather"),
        ("123", None),
        ("  ", None),
        (7, None),
    ],
)
def test_readable_class_names(label, name) -> None:
    from protoshot.labels import readable_name

    assert readable_name(label) == name


@pytest.mark.parametrize(
    ("content", "given"),
    [
        ("text;label\nhello, world;greet\nbye;leave\n", None),  # a European export
        ("text\tlabel\nhello, world\tgreet\nbye\tleave\n", None),
        ("text|label\nhello, world|greet\nbye|leave\n", "|"),
        ("text\tlabel\nhello, world\tgreet\nbye\tleave\n", "tab"),
    ],
)
def test_csv_delimiter_detected_or_given(tmp_path: Path, content: str, given: str | None) -> None:
    path = tmp_path / "data.csv"
    path.write_text(content)
    samples = load_source(path, delimiter=given)
    assert samples.items == ["hello, world", "bye"]
    assert samples.labels.tolist() == ["greet", "leave"]
    texts, others = read_text_column(path, delimiter=given)
    assert texts == ["hello, world", "bye"] and others[0] == {"label": "greet"}


def test_table_rows_are_numbered_from_one_and_empty_texts_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("text,label\nfine,a\n   ,b\n")
    with pytest.raises(ValueError, match=r"data.csv, row 2: the text is empty"):
        load_source(path)
    path.write_text("text,label\nfine,a\nalso fine,\n")
    with pytest.raises(ValueError, match=r"data.csv, row 2: the label is missing"):
        load_source(path)
    with pytest.raises(ValueError, match="a delimiter is one character"):
        load_source(path, delimiter=";;")


def test_an_unterminated_quote_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('text,label\nfine,a\n"never closed,b\nmore,c\n')
    with pytest.raises(
        ValueError, match=r"data.csv, line \d+: not valid CSV \(unexpected end of data\)"
    ):
        load_source(path)  # was: "row 0: the label is missing"
