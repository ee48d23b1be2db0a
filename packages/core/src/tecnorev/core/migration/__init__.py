"""The bridge between the installed modules and Alembic: one migration branch per module."""
