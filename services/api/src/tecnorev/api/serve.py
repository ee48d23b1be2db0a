"""``tecnorev serve``: the API under uvicorn, configured from the environment or ``.env``."""

from __future__ import annotations

import os
from importlib.util import find_spec
from typing import Annotated

import typer

from tecnorev.core.errors import ConfigError


def _default_workers() -> int:
    raw = os.environ.get("TECNOREV_WORKERS", "1").strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"TECNOREV_WORKERS={raw!r} must be a whole number of at least 1")
    return int(raw)


def serve(
    host: Annotated[str, typer.Option(envvar="TECNOREV_HOST", help="address to bind")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(envvar="TECNOREV_PORT", min=1, max=65535)] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="worker processes (default: TECNOREV_WORKERS, else 1)"),
    ] = None,
    reload: Annotated[bool, typer.Option(help="restart on code changes (development)")] = False,
    log_level: Annotated[str, typer.Option(envvar="TECNOREV_LOG_LEVEL")] = "info",
) -> None:
    """Serve the API composed from the installed modules (docs at /docs)."""
    import uvicorn

    from tecnorev.core.settings import get_settings, signing_key

    settings = get_settings()  # reads .env, so a bad value stops here with its message
    signing_key(settings)
    if settings.is_production:
        from tecnorev.api.app import check_ready_to_serve

        check_ready_to_serve()
    workers = workers or _default_workers()
    # Several workers on the plain asyncio/h11 stack lose TCP_NODELAY and answer an order of
    # magnitude slower; uvloop + httptools (uvicorn[standard]) do not.
    fast = find_spec("uvloop") is not None and find_spec("httptools") is not None
    if workers > 1 and not fast:
        raise ConfigError(
            "several workers need uvloop and httptools: pip install 'uvicorn[standard]'"
        )
    uvicorn.run(
        "tecnorev.api:create_app",
        factory=True,
        host=host,
        port=port,
        workers=None if reload else workers,
        reload=reload,
        loop="uvloop" if fast else "auto",
        http="httptools" if fast else "auto",
        log_level=log_level,
        proxy_headers=True,
    )
