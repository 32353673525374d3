"""The HTTP service: a FastAPI app over a saved :class:`~protoshot.model.FewShotModel` folder."""

from __future__ import annotations

from protoshot.service.app import create_app
from protoshot.service.inputs import Budget

__all__ = ["Budget", "create_app"]
