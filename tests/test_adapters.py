"""Adapters: the prototypical loss against a naive loop, training that helps on classes it never
saw, reproducible and honest (chosen on held-out classes, refused on seen ones), saved as
safetensors + JSON, and used as an embedder end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protoshot.adapters import (
    Adapter,
    AdapterSettings,
    prototypical_loss,
    split_classes,
    train_adapter,
)
from protoshot.episodes import EpisodeSampler
from protoshot.evaluation import evaluate_episodes
from tests.conftest import DATA_DIR

BASE = {"spec": "toy", "fingerprint": "f" * 64, "dim": 32, "modality": "any"}
FAST = AdapterSettings(dim=8, n_way=5, steps=300, eval_every=50, val_episodes=200)


OPTIONS_ADDED_LATER = ("top_learning_rate", "grid", "schedule")  # with partial fine-tuning


def naive_loss(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    losses = []
    for s, q in zip(support, query, strict=True):  # episode by episode, class by class
        protos = torch.stack([s[c].mean(0) for c in range(len(s))])
        for c in range(len(q)):
            for x in q[c]:
                logits = -((x - protos) ** 2).sum(-1)
                losses.append(-torch.log_softmax(logits, 0)[c])
    return torch.stack(losses).mean()


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3), n=st.integers(2, 5), k=st.integers(1, 3), q=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)  # fmt: skip
def test_the_prototypical_loss_is_the_naive_one(b, n, k, q, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    support, query = torch.randn(b, n, k, 4, generator=g), torch.randn(b, n, q, 4, generator=g)
    torch.testing.assert_close(prototypical_loss(support, query), naive_loss(support, query))


def strokes(n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes that differ in 4 of 32 features, buried under 28 loud nuisance features: frozen
    prototypes drown in the noise, a learnt map can drop it, for any new class too."""
    rng = np.random.default_rng(seed)
    means = np.zeros((n_classes, 32))
    means[:, :4] = rng.normal(scale=1.0, size=(n_classes, 4))
    x = (
        means[:, None]
        + rng.normal(scale=0.25, size=(n_classes, 20, 32)) * np.r_[np.ones(4), 8 * np.ones(28)]
    )
    return x.reshape(-1, 32).astype(np.float32), np.repeat(np.arange(n_classes), 20)


def accuracy(vectors: np.ndarray, labels: np.ndarray) -> float:
    episodes = EpisodeSampler(labels, n_way=5, n_shot=1, n_query=10, n_episodes=300, seed=7)
    return evaluate_episodes(vectors, episodes.sample(), normalizations=["cl2n"]).results[0].mean


def test_an_adapter_helps_on_classes_it_never_saw() -> None:
    x, y = strokes(60, seed=0)
    adapter = train_adapter(x, y, BASE, settings=FAST)
    assert adapter.accuracy > adapter.frozen_accuracy + 0.1  # on the held-out base classes
    novel_x, novel_y = strokes(30, seed=1)  # new classes, drawn the same way
    assert accuracy(adapter.transform(novel_x), novel_y) > accuracy(novel_x, novel_y) + 0.1
    assert adapter.transform(novel_x).shape == (600, 8) and adapter.dim == 8
    again = train_adapter(x, y, BASE, settings=FAST)
    assert again.fingerprint == adapter.fingerprint  # seeded: the same weights
    kept = max(adapter.history[1:], key=lambda h: h["accuracy"])
    assert adapter.accuracy == kept["accuracy"] and adapter.history[0]["step"] == 0


def test_each_kind_has_its_defaults() -> None:
    top = AdapterSettings.for_kind("top", steps=None, seed=3)
    assert (top.kind, top.steps, top.grid, top.schedule, top.seed) == ("top", 750, 2, "cosine", 3)
    assert AdapterSettings.for_kind("linear", steps=None) == AdapterSettings()
    with pytest.raises(ValueError, match="schedule"):
        AdapterSettings(schedule="step")
    with pytest.raises(ValueError, match="grid must be >= 1"):
        AdapterSettings(kind="top", grid=0)


def test_held_out_classes_and_refusals() -> None:
    labels = np.repeat(np.arange(50), 3)
    train, held = split_classes(labels, 0.2, seed=0)
    assert len(held) == 10 and not set(train) & set(held) and len(train) + len(held) == 50
    with pytest.raises(ValueError, match="too few to hold 5 out"):
        split_classes(np.repeat(np.arange(8), 3), 0.2, seed=0)
    with pytest.raises(ValueError, match="adapter kind"):
        AdapterSettings(kind="forest")
    x, y = strokes(20, seed=0)
    adapter = train_adapter(
        x,
        y,
        BASE,
        settings=AdapterSettings(kind="residual", steps=20, eval_every=10, val_episodes=20),
    )
    with pytest.raises(ValueError, match="shares 20 classes with the adapter's base set"):
        adapter.check_disjoint(y, "the evaluation set")
    adapter.check_disjoint(np.arange(100, 110), "new classes")  # disjoint: fine
    with pytest.raises(ValueError, match="validation set shares 20 classes with the base set"):
        train_adapter(x, y, BASE, settings=FAST, validation=(x, y))
    with pytest.raises(ValueError, match="takes vectors of 32 features"):
        adapter.transform(np.zeros((2, 31)))


@pytest.mark.parametrize("kind", ["linear", "residual", "mlp"])
def test_saved_as_safetensors_and_json_and_checked_on_load(kind, tmp_path: Path) -> None:
    x, y = strokes(20, seed=0)
    trained = train_adapter(
        x,
        y,
        BASE,
        settings=AdapterSettings(kind=kind, dim=8, steps=20, eval_every=10, val_episodes=20),
    )
    folder = trained.save(tmp_path / "a")
    assert sorted(p.name for p in folder.iterdir()) == ["adapter.json", "adapter.safetensors"]
    loaded = Adapter.load(folder)
    assert loaded.fingerprint == trained.fingerprint and loaded.settings == trained.settings
    np.testing.assert_array_equal(loaded.transform(x), trained.transform(x))
    with pytest.raises(FileExistsError, match="already holds an adapter"):
        trained.save(folder)
    config = json.loads((folder / "adapter.json").read_text())
    (folder / "adapter.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"not the file adapter\.json was written with"):
        Adapter.load(folder)
    (folder / "adapter.json").write_text(json.dumps({**config, "classes": config["classes"][1:]}))
    trained.save(folder, overwrite=True)
    config = json.loads((folder / "adapter.json").read_text())
    (folder / "adapter.json").write_text(json.dumps({**config, "classes": config["classes"][1:]}))
    with pytest.raises(ValueError, match="do not give the recorded fingerprint"):
        Adapter.load(folder)  # a class dropped from the list: the leak check would weaken
    (folder / "adapter.json").write_text(json.dumps({**config, "base": {}}))
    with pytest.raises(ValueError, match="holds a damaged adapter"):
        Adapter.load(folder)
    older = {k: v for k, v in config["settings"].items() if k not in OPTIONS_ADDED_LATER}
    (folder / "adapter.json").write_text(json.dumps({**config, "settings": older}))
    assert Adapter.load(folder).fingerprint == trained.fingerprint  # an earlier adapter loads
    (folder / "adapter.json").write_text(json.dumps({**config, "format_version": 9}))
    with pytest.raises(ValueError, match="does not describe a format 1 or 2 adapter"):
        Adapter.load(folder)
    (folder / "adapter.json").write_text("[1, 2]")  # JSON, but not a description
    with pytest.raises(ValueError, match="does not describe a format 1 or 2 adapter"):
        Adapter.load(folder)
    with pytest.raises(ValueError, match="is not a readable adapter folder"):
        Adapter.load(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def intents(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two CSVs of BANKING77 texts with disjoint intents (30 and 10 of them)."""
    from protoshot.data import load_source

    samples = load_source("banking77:train", root=DATA_DIR)
    classes = np.unique(samples.labels)
    folder = tmp_path_factory.mktemp("intents")
    for name, chosen in (("base", classes[:30]), ("novel", classes[30:40])):
        rows = [(t, c) for t, c in zip(samples.items, samples.labels, strict=True) if c in chosen]
        picked = [r for c in chosen for r in [r for r in rows if r[1] == c][:12]]
        lines = ["text,label"] + [f'"{t.replace(chr(34), chr(39))}",{c}' for t, c in picked]
        (folder / f"{name}.csv").write_text("\n".join(lines))
    return folder / "base.csv", folder / "novel.csv"


def protoshot(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "protoshot", *map(str, args)], capture_output=True, text=True,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip


@pytest.mark.slow
def test_adapt_then_evaluate_fit_and_predict_with_it(
    intents: tuple[Path, Path], cache_dir: Path, tmp_path: Path
) -> None:
    base, novel = intents
    adapter = tmp_path / "adapter"
    done = protoshot("adapt", base, "--model", "minilm", "-o", adapter, "--steps", "60",
                     "--ways", "5", "--cache-dir", cache_dir, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["validation"] == "held-out base classes" and summary["train_classes"] == 24
    spec = f"adapter:{adapter}"
    scored = protoshot("evaluate", novel, "--model", spec, "--ways", "5", "--shots", "1",
                       "--queries", "5", "--episodes", "50", "--cache-dir", cache_dir, "--json")  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    leak = protoshot("evaluate", base, "--model", spec, "--cache-dir", cache_dir)
    assert leak.returncode == 1 and "shares 30 classes with the adapter's base set" in leak.stderr
    made = protoshot(
        "embed", base, "--model", spec, "-o", tmp_path / "t.parquet", "--cache-dir", cache_dir
    )
    assert made.returncode == 0, made.stderr
    leak = protoshot("evaluate", tmp_path / "t.parquet", "--cache-dir", cache_dir)  # no --model
    assert leak.returncode == 1 and "shares 30 classes with the adapter's base set" in leak.stderr
    fitted = protoshot(
        "fit", novel, "--model", spec, "-o", tmp_path / "m", "--cache-dir", cache_dir
    )
    assert fitted.returncode == 0, fitted.stderr
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["metadata"]["embedder"]["spec"] == f"adapter:{adapter.resolve()}"
    assert config["metadata"]["embedder"]["fingerprint"] == summary["fingerprint"]
    answer = protoshot("predict", tmp_path / "m", "--text", "my card has not arrived yet",
                       "--cache-dir", cache_dir, "--json")  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    # --adapter DIR is --model adapter:DIR; a table of the base model's vectors goes through it
    plain = protoshot(
        "embed", novel, "--model", "minilm", "-o", tmp_path / "n.parquet", "--cache-dir", cache_dir
    )
    assert plain.returncode == 0, plain.stderr
    refit = protoshot(
        "fit",
        tmp_path / "n.parquet",
        "--adapter",
        adapter,
        "-o",
        tmp_path / "m2",
        "--cache-dir",
        cache_dir,
    )
    assert refit.returncode == 0, refit.stderr
    second = json.loads((tmp_path / "m2" / "config.json").read_text())["metadata"]["embedder"]
    assert second["fingerprint"] == summary["fingerprint"]
    adapted = protoshot(
        "embed", novel, "--model", spec, "-o", tmp_path / "a.parquet", "--cache-dir", cache_dir
    )
    assert adapted.returncode == 0, adapted.stderr
    again_table = protoshot("evaluate", tmp_path / "a.parquet", "--model", spec, "--ways", "5",
                            "--queries", "5", "--episodes", "20", "--cache-dir", cache_dir)  # fmt: skip
    assert again_table.returncode == 0, again_table.stderr  # a table the adapter made, named
    flagged = protoshot("evaluate", novel, "--adapter", adapter, "--ways", "5", "--queries", "5",
                        "--episodes", "20", "--cache-dir", cache_dir)  # fmt: skip
    assert flagged.returncode == 0, flagged.stderr
    wrong = protoshot(
        "fit", novel, "--adapter", adapter, "--model", "efficientnet-lite0", "-o", tmp_path / "x"
    )
    assert wrong.returncode == 1 and "was trained over 'minilm', not --model" in wrong.stderr
    again = protoshot("adapt", base, "--model", "minilm", "-o", adapter, "--cache-dir", cache_dir)
    assert again.returncode == 1 and "already holds an adapter" in again.stderr


@pytest.mark.slow
def test_the_adapter_embedder_is_its_base_then_its_head(cache_dir: Path, tmp_path: Path) -> None:
    from protoshot.embedders import create_embedder, embed

    minilm = create_embedder("minilm")
    x, y = strokes(20, seed=0)
    described = {
        "spec": "minilm",
        "fingerprint": minilm.fingerprint,
        "dim": 384,
        "modality": "text",
    }
    head = train_adapter(
        np.tile(x, (1, 12)),
        y,
        described,
        settings=AdapterSettings(dim=16, steps=10, eval_every=5, val_episodes=20),
    )
    head.save(tmp_path / "a")
    adapted = create_embedder(f"adapter:{tmp_path / 'a'}", cache=cache_dir)
    texts = ["where is my card", "I want a refund"]
    assert adapted.fingerprint == head.fingerprint and adapted.dim == 16
    want = head.transform(embed(texts, minilm, cache=cache_dir))
    np.testing.assert_allclose(embed(texts, adapted, cache=cache_dir), want, atol=1e-6)
    other = {**described, "fingerprint": "0" * 64}
    train_adapter(
        np.tile(x, (1, 12)),
        y,
        other,
        settings=AdapterSettings(dim=16, steps=10, eval_every=5, val_episodes=20),
    ).save(tmp_path / "b")
    with pytest.raises(ValueError, match="other weights or preprocessing"):
        create_embedder(f"adapter:{tmp_path / 'b'}")


class ToyTop(torch.nn.Module):
    """A model's top in small: a 1x1 convolution and BatchNorm over 8 x 2 x 2 maps (the 32
    features of :func:`strokes`), the same pretrained weights each time it is built."""

    dim = 6

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(8, 6, 1)
        self.bn = torch.nn.BatchNorm2d(6)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(6, 8, 1, 1, generator=generator))
            self.bn.running_mean.copy_(0.1 * torch.randn(6, generator=generator))
        self.eval()

    def maps(self, lower: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(lower.reshape(len(lower), 8, 2, 2))))

    def forward(self, lower: torch.Tensor) -> torch.Tensor:
        return self.maps(lower).mean(dim=(2, 3))

    def train(self, mode: bool = True) -> ToyTop:
        super().train(mode)
        self.bn.eval()
        return self


@pytest.fixture
def toy_split(monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered model that splits (its top is :class:`ToyTop`): the lower part's spec."""
    from protoshot.embedders import _registry

    _registry._load_backends()
    entry = _registry._Entry("toy-split", lambda **_: None, False, (), ToyTop)
    monkeypatch.setitem(_registry._REGISTRY, "toy-split", entry)
    return "toy-split?features=lower"


def test_a_top_is_fine_tuned_on_its_lower_part(toy_split: str, tmp_path: Path) -> None:
    from protoshot.cli._common import with_adapter

    x, y = strokes(60, seed=0)
    base = {**BASE, "spec": toy_split}
    fast = {"dim": 8, "n_way": 5, "steps": 150, "eval_every": 50, "val_episodes": 200,
            "learning_rate": 1e-2, "top_learning_rate": 1e-2}  # fmt: skip
    adapter = train_adapter(x, y, base, settings=AdapterSettings.for_kind("top", **fast))
    assert adapter.center is None and adapter.dim == 8 and adapter.settings.grid == 2
    assert adapter.accuracy > adapter.frozen_accuracy + 0.05  # on the held-out base classes
    novel_x, novel_y = strokes(30, seed=1)
    assert accuracy(adapter.transform(novel_x), novel_y) > accuracy(novel_x, novel_y) + 0.05
    top = adapter.head.top
    assert not torch.equal(top.conv.weight, ToyTop().conv.weight)  # fine-tuned ...
    torch.testing.assert_close(top.bn.running_mean, ToyTop().bn.running_mean)  # ... stats kept
    constant = AdapterSettings.for_kind("top", **fast, schedule="constant")
    other = train_adapter(x, y, base, settings=constant)
    assert other.fingerprint != adapter.fingerprint  # the schedule is applied
    folder = adapter.save(tmp_path / "top")
    config = json.loads((folder / "adapter.json").read_text())
    assert config["format_version"] == 2 and config["settings"]["grid"] == 2
    loaded = Adapter.load(folder)
    np.testing.assert_array_equal(loaded.transform(novel_x), adapter.transform(novel_x))
    # --model may name the whole model (with runtime options) or its lower part
    for model in ("toy-split", "toy-split?runtime=torch", toy_split):
        assert with_adapter(model, folder) == f"adapter:{folder.resolve()}"
    with pytest.raises(ValueError, match="was trained over 'toy-split\\?features=lower'"):
        with_adapter("minilm", folder)
    linear = train_adapter(x, y, BASE, settings=AdapterSettings(steps=5, val_episodes=20))
    config = json.loads((linear.save(tmp_path / "linear") / "adapter.json").read_text())
    assert config["format_version"] == 1 and not set(OPTIONS_ADDED_LATER) & set(config["settings"])


def omniglot_folder(root: Path, split: str, n_classes: int, n_images: int) -> Path:
    """``n_classes`` characters of an Omniglot split as an image folder (one sub-folder per
    class, ``n_images`` links each)."""
    characters = sorted((DATA_DIR / "omniglot" / split).iterdir())[:n_classes]
    for character in characters:
        folder = root / character.name
        folder.mkdir(parents=True)
        for image in sorted(character.iterdir())[:n_images]:
            (folder / image.name).symlink_to(image)
    return root


@pytest.mark.slow
def test_the_lower_part_and_the_top_are_the_whole_model(cache_dir: Path) -> None:
    from protoshot.embedders import create_embedder, embed, lower_part, upper_part

    images = sorted((DATA_DIR / "omniglot" / "images_evaluation").glob("*/*.png"))[:6]
    assert len(images) == 6
    whole = create_embedder("efficientnet-lite0")
    lower = create_embedder(lower_part("efficientnet-lite0?runtime=torch"))
    assert lower.spec == "efficientnet-lite0?features=lower" and lower.dim == 192 * 7 * 7
    assert lower.fingerprint != whole.fingerprint  # maps and features never share a cache entry
    assert whole.fingerprint.startswith("4bfaf096")  # the pooled features' (cached) never moves
    maps = embed(images, lower, cache=cache_dir)
    top = upper_part(lower.spec)
    with torch.inference_mode():
        features = top(torch.from_numpy(maps)).numpy()
    np.testing.assert_allclose(features, embed(images, whole, cache=cache_dir), atol=1e-4)
    top.train()  # BatchNorm keeps its ImageNet statistics while the top is fine-tuned
    assert not any(m.training for m in top.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        np.testing.assert_allclose(top(torch.from_numpy(maps)).numpy(), features, atol=1e-5)
    with pytest.raises(ValueError, match=r"cannot be fine-tuned in part .*efficientnet-lite0"):
        lower_part("minilm")
    with pytest.raises(ValueError, match="is not the lower part of a model"):
        upper_part("efficientnet-lite0")


@pytest.mark.slow
def test_partial_fine_tuning_end_to_end(cache_dir: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from protoshot.embedders import create_embedder, embed

    base = omniglot_folder(tmp_path / "base", "images_background", 25, 6)
    novel = omniglot_folder(tmp_path / "novel", "images_evaluation", 5, 6)
    out = tmp_path / "top"
    done = protoshot("adapt", base, "--model", "efficientnet-lite0", "--kind", "top", "-o", out,
                     "--steps", "12", "--ways", "5", "--dim", "64", "--cache-dir", cache_dir,
                     "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    adapter = Adapter.load(out)
    assert summary["kind"] == "top" and summary["fingerprint"] == adapter.fingerprint
    assert adapter.base["spec"] == "efficientnet-lite0?features=lower" and adapter.center is None
    assert adapter.dim == 64 and adapter.settings.episodes_per_step == 1  # the top's defaults
    assert [h["step"] for h in adapter.history][:1] == [0] and adapter.history[-1]["step"] == 12
    # only the changed part is saved: the last block, the head convolution, the projection
    names = load_file(out / "adapter.safetensors")
    assert {n.split(".")[1] for n in names} == {"top", "center", "proj"}
    assert not any("stem" in n or "_blocks" in n for n in names)
    assert (out / "adapter.safetensors").stat().st_size < 10_000_000
    # an embedder like any other: the lower part's cached maps, then the fine-tuned top
    images = sorted(novel.rglob("*.png"))[:4]
    maps = embed(images, create_embedder("efficientnet-lite0?features=lower"), cache=cache_dir)
    adapted = create_embedder(f"adapter:{out}", cache=cache_dir)
    assert adapted.fingerprint == adapter.fingerprint and adapted.dim == 64
    np.testing.assert_allclose(
        embed(images, adapted, cache=cache_dir), adapter.transform(maps), atol=1e-5
    )
    fitted = protoshot(
        "fit", novel, "--adapter", out, "-o", tmp_path / "m", "--cache-dir", cache_dir
    )
    assert fitted.returncode == 0, fitted.stderr
    answer = protoshot("predict", tmp_path / "m", images[0], "--format", "jsonl", "--cache-dir",
                       cache_dir)  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["label"] == images[0].parent.name  # its own shot
    scored = protoshot("evaluate", novel, "--adapter", out, "--model", "efficientnet-lite0",
                       "--ways", "5", "--shots", "1", "--queries", "3", "--episodes", "20",
                       "--cache-dir", cache_dir, "--json")  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    leak = protoshot("evaluate", base, "--adapter", out, "--cache-dir", cache_dir)
    assert leak.returncode == 1 and "shares 25 classes with the adapter's base set" in leak.stderr
    text = protoshot("adapt", base, "--model", "minilm", "--kind", "top", "-o", tmp_path / "t")
    assert text.returncode == 1 and "'minilm' cannot be fine-tuned in part" in text.stderr
