"""The HTTP service: a FastAPI app over a saved :class:`~protoshot.model.FewShotModel` folder."""

from __future__ import annotations

from protoshot.service.app import create_app

__all__ = ["create_app"]
