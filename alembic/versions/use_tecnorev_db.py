"""Not a revision: every module ships its own migrations, found through its entry point.

Plain ``alembic heads``, ``branches`` and ``show`` never run env.py, so they cannot discover
the modules and read this folder instead.  Loading this file stops them with a pointer
rather than letting them print nothing.
"""

from alembic.util import CommandError

raise CommandError(
    "plain 'alembic' reads alembic/versions for this command and cannot see the installed "
    "modules' migrations (only commands that run env.py can). Run it as "
    "'tecnorev db <same command and options>', for example 'tecnorev db heads'."
)
