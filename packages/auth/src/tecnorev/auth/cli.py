"""``tecnorev users``: the first administrator and password resets, from the shell.

The database is DATABASE_URL (environment or ``.env``).  Failures raise ``TecnorevError``s,
which ``tecnorev`` prints as ``error: <message>`` with exit status 1 (2 when the database
cannot be reached).

No ``from __future__ import annotations``: typer reads the options' ``Annotated`` types at
run time.  The rest is imported inside the commands, so other ``tecnorev`` commands do not
pay for it.
"""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlmodel import Session

app = typer.Typer(help="Users: create an administrator, reset a password.", no_args_is_help=True)

ADMIN_PASSWORD_ENV = "TECNOREV_ADMIN_PASSWORD"
_AUTH_TABLES = ("user", "role", "role_permission", "user_role", "refresh_token")

EmailOption = Annotated[str, typer.Option("--email", help="the user's email address")]
PasswordOption = Annotated[
    str | None,
    typer.Option(
        "--password",
        help="10 to 128 characters; default: a generated one, printed once.  A password on "
        "the command line shows in the process list and shell history.",
        show_default=False,
    ),
]


def _generated_password() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 random bits


@contextmanager
def _unit_of_work() -> Iterator["Session"]:
    from tecnorev.core.db import check_connection, get_engine, session_scope

    engine = get_engine()
    check_connection(engine)
    _require_auth_tables(engine)
    with session_scope(engine) as session:
        yield session


def _require_auth_tables(engine: "sa.Engine") -> None:
    import sqlalchemy as sa

    from tecnorev.core.db import describe_url
    from tecnorev.core.errors import MigrationError

    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        missing = [table for table in _AUTH_TABLES if not inspector.has_table(table)]
    if missing:
        raise MigrationError(
            f"the auth tables do not exist in {describe_url(engine.url)} "
            f"(missing: {', '.join(missing)}); create them with: tecnorev db upgrade heads"
        )


@app.command("create-admin")
def create_admin(
    email: EmailOption,
    password: PasswordOption = None,
    if_missing: Annotated[
        bool,
        typer.Option(
            "--if-missing",
            help="when the user already exists, say so and exit 0 without changing anything",
        ),
    ] = False,
) -> None:
    """Create a user with the admin role.

    The password is --password, else $TECNOREV_ADMIN_PASSWORD, else a generated one, which
    is printed once.  An existing email is refused (exit 1) unless --if-missing.
    """
    from tecnorev.auth import service
    from tecnorev.auth.config import AuthSettings
    from tecnorev.auth.errors import EmailTaken

    stored = AuthSettings().admin_password
    given = password or (stored.get_secret_value().strip() if stored else "") or None
    chosen = given or _generated_password()
    try:
        with _unit_of_work() as session:
            existing = service.user_by_email(session, email)
            if existing is not None:
                raise EmailTaken(
                    f"a user with email {existing.email!r} already exists; nothing changed "
                    "(reset its password with: tecnorev users set-password --email ...)"
                )
            created = service.create_admin(session, email=email, password=chosen).user.email
    except EmailTaken:
        if not if_missing:
            raise
        typer.echo(f"the administrator {service.normalize_email(email)} already exists")
        return
    typer.echo(f"created administrator {created}")
    if given:
        source = "--password" if password else f"${ADMIN_PASSWORD_ENV}"
        typer.echo(f"password: the one given in {source}")
    else:
        typer.echo(f"password: {chosen}")
        typer.echo("(shown only this once: store it now)")


@app.command("set-password")
def set_password(email: EmailOption, password: PasswordOption = None) -> None:
    """Set a user's password and end every login of theirs (an operator's reset)."""
    from tecnorev.auth import service

    chosen = password or _generated_password()
    with _unit_of_work() as session:
        changed = service.reset_password(session, email=email, password=chosen).email
    typer.echo(f"password of {changed} set; their logins have ended")
    if not password:
        typer.echo(f"password: {chosen}")
        typer.echo("(shown only this once: store it now)")
