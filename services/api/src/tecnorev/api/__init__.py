"""The API service: a FastAPI application composed from the installed modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app() -> FastAPI:
    """An application with the service's health endpoint; module routers join it later."""
    from fastapi import FastAPI

    from tecnorev.core.registry import get_registry

    registry = get_registry()
    app = FastAPI(title="Tecno Rev", version="0.1.0")

    @app.get("/health", tags=["service"])
    def health() -> dict[str, object]:
        return {"status": "ok", "modules": registry.names}

    return app
