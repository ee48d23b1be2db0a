"""``create_index_concurrently`` for revisions written before the engine moved: it lives in
``tecnorev.migrate.helpers`` (tecnorev-migrate)."""

from tecnorev.core.migration._moved import moved

create_index_concurrently = moved("helpers").create_index_concurrently

__all__ = ["create_index_concurrently"]
