"""The Samples type and its helpers."""

from __future__ import annotations

import numpy as np
import pytest

from protoshot.data import Samples


def test_samples_check_lengths() -> None:
    with pytest.raises(ValueError, match="one entry per sample, got 2, 1 and 2"):
        Samples(["a", "b"], np.array(["x"]), np.array(["0", "1"]), "text")
