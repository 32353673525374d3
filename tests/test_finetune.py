"""Fit-time fine-tuning of MiniLM's last layer: the split, training, files, the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import protoshot.cli._commands  # noqa: F401  (registers the commands)
from protoshot.adapters import AdapterSettings, describe, train_adapter
from protoshot.cli import app
from protoshot.embedders import CallableEmbedder, create_embedder
from protoshot.embedders.tuned import beside, torch_spec
from protoshot.finetune import NotTuned, TextParts, TunedEncoder, TuneSettings, tune_text
from protoshot.model import FewShotModel
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.slow
runner = CliRunner()
TEXTS = [
    "I lost my card", "my card is gone, someone took it", "card stolen yesterday",
    "where is my refund", "refund has not arrived", "I want my money back",
    "what is the exchange rate", "how much is a dollar in euros", "rate for yen",
]  # fmt: skip
LABELS = ["lost_card"] * 3 + ["refund"] * 3 + ["exchange_rate"] * 3
FAST = TuneSettings(epochs=3, batch_size=4)
SCHEMA = Path(__file__).parents[1] / "src" / "protoshot" / "schemas" / "evaluate.schema.json"


@pytest.fixture(scope="module")
def minilm():
    """MiniLM in PyTorch (tuning replaces its last layer's weights: each test builds its own
    tuned embedder, never this one)."""
    return create_embedder(torch_spec("minilm"))


@pytest.fixture(scope="module")
def by_intent() -> dict[str, list[str]]:
    """BANKING77 test texts of its first 5 intents (sorted), by intent."""
    with open(DATA_DIR / "banking77" / "banking_data" / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    intents = sorted({r["category"] for r in rows})[:5]
    return {i: [r["text"] for r in rows if r["category"] == i] for i in intents}


@pytest.fixture(scope="module")
def encoder(minilm) -> TunedEncoder:
    return tune_text(minilm, TEXTS, LABELS, base=describe(minilm), settings=FAST)


def test_the_split_gives_the_models_own_vectors(minilm) -> None:
    parts = TextParts.of(minilm)
    states, mask = parts.hidden_states(TEXTS, 1, torch.device("cpu"))
    with torch.no_grad():
        again = parts.top(parts.layers[-1:], states, mask).numpy()
    np.testing.assert_allclose(again, minilm.embed(TEXTS), atol=1e-5)


def test_tuning_learns_and_is_deterministic(minilm, encoder: TunedEncoder) -> None:
    assert len(encoder.history) == FAST.epochs and encoder.history[-1] < encoder.history[0]
    assert encoder.classes == sorted(set(LABELS))
    frozen = {k: v.numpy() for k, v in TextParts.of(minilm).layers[-1:].state_dict().items()}
    assert frozen.keys() == encoder.weights.keys()
    assert any(not np.array_equal(frozen[k], encoder.weights[k]) for k in frozen)
    again = tune_text(minilm, TEXTS, LABELS, base=describe(minilm), settings=FAST)
    assert again.fingerprint == encoder.fingerprint
    other = tune_text(minilm, TEXTS, LABELS, base=describe(minilm), settings=TuneSettings(
        epochs=3, batch_size=4, seed=1))  # fmt: skip
    assert other.fingerprint != encoder.fingerprint


def test_saved_encoder_embeds_as_trained(minilm, encoder: TunedEncoder, tmp_path: Path) -> None:
    encoder.save(tmp_path / "enc")
    tuned = create_embedder(f"tuned:{tmp_path / 'enc'}")
    assert tuned.fingerprint == encoder.fingerprint != minilm.fingerprint
    parts = TextParts.of(tuned.base)
    with torch.no_grad():
        expected = parts.top(parts.layers[-1:], *parts.hidden_states(TEXTS, 1, torch.device("cpu")))
    got = tuned.embed(TEXTS)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    assert np.abs(got - minilm.embed(TEXTS)).max() > 1e-3  # the tuned layer is in use
    # a damaged file is refused, never loaded
    weights = tmp_path / "enc" / "encoder.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="not the file"):
        TunedEncoder.load(tmp_path / "enc")
    config = tmp_path / "enc" / "encoder.json"
    config.write_text(config.read_text().replace('"format_version": 1', '"format_version": 7'))
    with pytest.raises(ValueError, match="does not describe a format 1 tuned encoder"):
        TunedEncoder.load(tmp_path / "enc")


def test_what_is_not_tuned(minilm) -> None:
    with pytest.raises(NotTuned, match="one shot per class"):
        tune_text(minilm, TEXTS[:3], ["a", "b", "c"], base=describe(minilm))
    blow_up = TuneSettings(epochs=3, batch_size=4, learning_rate=float("inf"))
    with pytest.raises(NotTuned, match="diverged"):
        tune_text(minilm, TEXTS, LABELS, base=describe(minilm), settings=blow_up)
    # models that cannot be tuned are refused, by name (not a fallback)
    ones = CallableEmbedder(lambda xs: np.ones((len(xs), 2)), name="ones", modality="text")
    with pytest.raises(ValueError, match="ones cannot be fine-tuned"):
        tune_text(ones, TEXTS, LABELS, base=describe(ones))
    with pytest.raises(ValueError, match="int8"):
        torch_spec("minilm?runtime=onnx-int8")
    with pytest.raises(ValueError, match="efficientnet-lite0 cannot be fine-tuned"):
        torch_spec("efficientnet-lite0")


def _csv(path: Path, texts: list[str], labels: list[str]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    return path


def _named(model: Path) -> Path:
    """The encoder folder a model names."""
    spec = json.loads((model / "config.json").read_text())["metadata"]["embedder"]["spec"]
    return Path(spec.removeprefix("tuned:"))


def _invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout + result.stderr


def test_fit_finetune_end_to_end(
    by_intent: dict[str, list[str]], tmp_path: Path, cache_dir: Path
) -> None:
    """fit --finetune -> predict -> add -> the folder moved -> a new fit replaces the encoder."""
    mine = by_intent
    intents = list(mine)
    shots = [(text, i) for i in intents[:4] for text in mine[i][:4]]
    support = _csv(tmp_path / "support.csv", [t for t, _ in shots], [i for _, i in shots])
    model = tmp_path / "model"
    cache = ("--cache-dir", cache_dir)
    code, out = _invoke("fit", support, "-m", "minilm", "-o", model, "--finetune", *cache)
    assert code == 0, out
    assert "fine-tuned the last layer" in out
    (folder,) = model.glob("encoder-*")
    spec = json.loads((model / "config.json").read_text())["metadata"]["embedder"]["spec"]
    assert spec == f"tuned:{folder.resolve()}"
    queries = [mine[i][10] for i in intents[:4]]
    loaded = FewShotModel.load(model, cache=cache_dir)
    first = [p.label for p in loaded.predict(queries)]
    assert sum(a == b for a, b in zip(first, intents[:4], strict=True)) >= 3
    # add: the new class's shots go through the tuned encoder, exactly, without re-tuning
    new = intents[4]
    texts = [arg for text in mine[new][:4] for arg in ("-t", text)]
    code, out = _invoke("add", model, new, *texts, *cache)
    assert code == 0, out
    grown = FewShotModel.load(model, cache=cache_dir)
    assert grown.embedder.fingerprint == loaded.embedder.fingerprint
    assert new in grown.classes
    added = np.asarray(grown.classifier.support_)[
        np.asarray(grown.classifier.support_codes_) == grown.classes.index(new)
    ]
    np.testing.assert_allclose(added, grown.embed(mine[new][:4]), atol=1e-6)
    # moved: the encoder is found beside the model
    moved = tmp_path / "elsewhere"
    shutil.move(model, moved)
    assert beside(spec, moved) == f"tuned:{(moved / folder.name).resolve()}"
    assert [p.label for p in FewShotModel.load(moved, cache=cache_dir).predict(queries)] == first
    # fit again: a new encoder; the one the replaced model named stays for its readers, a
    # folder of the user's own stays, older encoders go
    mine_folder = moved / "encoder-notes"
    mine_folder.mkdir()
    three = _csv(tmp_path / "three.csv", [t for t, _ in shots[::4]] * 3, intents[:4] * 3)
    code, out = _invoke("fit", three, "-m", "minilm", "-o", moved, "--finetune", "--force", *cache)
    assert code == 0, out
    assert {f.name for f in moved.glob("encoder-*")} - {"encoder-notes"} == {
        folder.name,
        _named(moved).name,
    }
    second = _named(moved)
    # one shot per class is not tuned: it says so; the first encoder goes, the second stays
    single = _csv(tmp_path / "single.csv", [mine[i][0] for i in intents], intents)
    code, out = _invoke("fit", single, "-m", "minilm", "-o", moved, "--finetune", "--force", *cache)
    assert code == 0, out
    assert "not fine-tuned" in out
    assert sorted(f.name for f in moved.glob("encoder-*")) == sorted([second.name, "encoder-notes"])
    assert json.loads((moved / "config.json").read_text())["metadata"]["embedder"]["spec"] == (
        "minilm"
    )
    code, out = _invoke("fit", single, "-m", "minilm", "-o", moved, "--force", *cache)
    assert [f.name for f in moved.glob("encoder-*")] == ["encoder-notes"]
    # what cannot be tuned is an error: the int8 runtime, an adapter over MiniLM
    rng = np.random.default_rng(0)
    small = AdapterSettings(dim=8, n_way=2, steps=2, eval_every=1, val_episodes=5)
    over_minilm = describe(create_embedder("minilm"))
    train_adapter(
        rng.normal(size=(120, 384)).astype(np.float32), np.repeat(np.arange(12), 10), over_minilm,
        settings=small,
    ).save(tmp_path / "adapter")  # fmt: skip
    for bad, why in (
        (("-m", "minilm?runtime=onnx-int8"), "int8"),
        (("-m", "minilm", "--adapter", tmp_path / "adapter"), "do not go together"),
    ):
        code, out = _invoke("fit", support, *bad, "-o", tmp_path / "m3", "--finetune", *cache)
        assert code != 0 and why in out, out
    # an embedding table has no texts to tune on
    table = tmp_path / "table.parquet"
    assert _invoke("embed", support, "-m", "minilm", "-o", table, *cache)[0] == 0
    code, out = _invoke("fit", table, "-m", "minilm", "-o", tmp_path / "m2", "--finetune", *cache)
    assert code != 0 and "needs texts" in out


def test_evaluate_and_fit_config_with_finetune(
    by_intent: dict[str, list[str]], tmp_path: Path, cache_dir: Path
) -> None:
    """evaluate --finetune adds fine-tuned rows, paired with the frozen ones; a report whose
    best row was tuned makes fit --config tune."""
    mine = by_intent
    intents = list(mine)[:4]
    train = [(t, i) for i in intents for t in mine[i][:6]]
    test = [(t, i) for i in intents for t in mine[i][6:16]]
    train_csv = _csv(tmp_path / "train.csv", [t for t, _ in train], [i for _, i in train])
    test_csv = _csv(tmp_path / "test.csv", [t for t, _ in test], [i for _, i in test])
    args = ("evaluate", train_csv, "--test", test_csv, "--model", "minilm", "--protocol",
            "all-class", "--shots", "1,3", "--methods", "prototypes,linear", "--episodes", "2",
            "--cache-dir", cache_dir)  # fmt: skip
    result = runner.invoke(app, [*map(str, args), "--finetune", "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "shot counts below 2 are not tuned" in result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, json.loads(SCHEMA.read_text()))
    tuned = [r for r in report["results"] if r["config"].get("finetune")]
    frozen = [r for r in report["results"] if not r["config"].get("finetune")]
    assert {(r["config"]["method"], r["config"]["n_shot"]) for r in tuned} == {
        ("prototypes", 3),
        ("linear", 3),
    }
    assert len(frozen) == 2 * len(tuned)  # 1 and 3 shots frozen, 3 shots tuned
    assert all(r["n_episodes"] == 2 for r in report["results"])
    for row in tuned:  # each tuned row is paired with the frozen prototypes of its shots
        assert row["paired"]["baseline"]["method"] == "prototypes"
        assert "finetune" not in row["paired"]["baseline"]
    # episodes: each tuned on its own shots, paired with the frozen rows episode by episode
    episodic = ("evaluate", train_csv, "--model", "minilm", "--ways", "3", "--shots", "2",
                "--queries", "3", "--methods", "prototypes", "--metrics", "cosine",
                "--normalizations", "l2", "--episodes", "3", "--cache-dir", cache_dir)  # fmt: skip
    result = runner.invoke(app, [*map(str, episodic), "--finetune", "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)["results"]
    assert [r["config"].get("finetune", False) for r in rows] == [False, True]
    assert rows[1]["n_episodes"] == 3 and rows[1]["config"]["n_way"] == 3
    assert rows[1]["paired"]["baseline"] == rows[0]["config"]
    code, out = _invoke(*episodic, "--classes", intents[0], "--finetune")
    assert code != 0 and "--classes" in out
    # fit --config: a report whose best configuration at 3 shots was fine-tuned
    best = dict(tuned[0]["config"])
    report["best_per_shot"] = [best]
    (tmp_path / "report.json").write_text(json.dumps(report))
    out = tmp_path / "model"
    code, text = _invoke("fit", train_csv, "--config", tmp_path / "report.json", "-o", out,
                         "--cache-dir", cache_dir)  # fmt: skip
    assert code == 0, text
    assert "fine-tuned the last layer" in text and list(out.glob("encoder-*"))


def test_a_tuned_model_is_served(
    by_intent: dict[str, list[str]], tmp_path: Path, cache_dir: Path
) -> None:
    """Over HTTP: predictions with the tuned encoder, and a class added with its shots embedded
    by it (what `protoshot serve` does with a folder of `fit --finetune`)."""
    from tests.test_service import serving

    mine = by_intent
    intents = list(mine)[:4]
    shots = [(text, i) for i in intents[:3] for text in mine[i][:4]]
    support = _csv(tmp_path / "support.csv", [t for t, _ in shots], [i for _, i in shots])
    model = tmp_path / "model"
    code, out = _invoke("fit", support, "-m", "minilm", "-o", model, "--finetune",
                        "--cache-dir", cache_dir)  # fmt: skip
    assert code == 0, out
    new = intents[3]
    with serving(model, cache_dir) as url:
        answer = httpx.post(f"{url}/v1/predict", json={"texts": [mine[i][8] for i in intents[:3]]})
        assert answer.status_code == 200
        assert answer.json()["model"]["embedder"] == f"tuned:{_named(model)}"
        added = httpx.post(
            f"{url}/v1/classes/{new}/examples", json={"texts": mine[new][:4]}, timeout=60
        )
        assert added.status_code == 200 and added.json()["classes"] == 4
    grown = FewShotModel.load(model, cache=cache_dir)
    stored = np.asarray(grown.classifier.support_)[
        np.asarray(grown.classifier.support_codes_) == grown.classes.index(new)
    ]
    np.testing.assert_allclose(stored, grown.embed(mine[new][:4]), atol=1e-6)
