"""Former home of the migration engine, now the tecnorev-migrate distribution
(``tecnorev.migrate``).  The two paths that revisions and ``alembic/env.py`` files were written
against stay importable here; everything else is imported from ``tecnorev.migrate``."""
