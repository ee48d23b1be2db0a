"""The API service: a FastAPI application composed from the installed modules."""

from tecnorev.api.app import create_app

__all__ = ["create_app"]
