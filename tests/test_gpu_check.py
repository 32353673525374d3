"""``benchmarks/gpu_check.py``, run where there is no GPU: every path but the device itself."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_the_gpu_check_runs_on_the_cpu_against_itself(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PROTOSHOT_DATA_DIR", str(DATA_DIR))
    main = runpy.run_path(str(SCRIPT))["main"]
    results = main(["--device", "cpu", "--episodes", "300", "--texts", "40",
                    "--json", str(tmp_path / "out.json")])  # fmt: skip
    same_place = [r for r in results if r["part"] == "evaluation" and r["dtype"] == "float32"]
    assert len(same_place) == 4 and all(r["difference"] == 0 for r in same_place)
    assert {r["method"] for r in results if r["part"] == "estimators"} == {
        "prototypes", "linear", "auto", "mahalanobis",
    }  # fmt: skip
    assert all(r["max_difference"] == 0 for r in results if r["part"] == "estimators")
    embedded = [r for r in results if r["part"] == "embedding"]
    assert [r["precision"] for r in embedded] == ["onnx", "fp32"]
    assert embedded[1]["max_difference"] <= 1e-5  # PyTorch against ONNX Runtime
    _, again = [r for r in results if r["part"] == "finetune"]
    assert again["shots"] == 40 and again["max_difference"] == 0  # tuned twice: the same
    assert again["moved_from_frozen"] > 1e-3  # ... and tuned at all
    out = capsys.readouterr().out
    assert out.count("| evaluation 5-way") == 8 and (tmp_path / "out.json").exists()


def test_without_cuda_it_says_how_to_run_it(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    main = runpy.run_path(str(SCRIPT))["main"]
    with pytest.raises(SystemExit):
        main([])
    assert "no CUDA device here" in capsys.readouterr().err
