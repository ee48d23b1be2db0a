import re

import sqlalchemy as sa
from sqlmodel import Session

from tecnorev.auth import service
from tecnorev.auth.errors import InvalidCredentials
from tecnorev.auth.models import User
from tecnorev.core.db import create_db_engine
from tecnorev.testing.auth import create_user
from tecnorev.testing.core import migrate, run_tecnorev

ADMIN = "Admin@Example.com"


def users(url: str) -> dict[str, tuple[str, list[str]]]:
    """email -> (stored hash, role names)."""
    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            accounts = session.execute(sa.select(User)).scalars().all()
            names = service.role_names(session, [a.id for a in accounts])
            return {a.email: (a.hashed_password, names[a.id]) for a in accounts}
    finally:
        engine.dispose()


def can_log_in(url: str, email: str, password: str) -> bool:
    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            service.authenticate(session, email=email, password=password)
            return True
    except InvalidCredentials:
        return False
    finally:
        engine.dispose()


def test_create_admin_once_then_refuses_or_skips(database_url):
    migrate(database_url, "auth@head")

    created = run_tecnorev("users", "create-admin", "--email", ADMIN, url=database_url)
    assert created.returncode == 0, created.stderr
    assert "admin@example.com" in created.stdout
    password = re.search(r"^password: (\S+)$", created.stdout, re.MULTILINE).group(1)
    assert len(password) >= 20
    assert can_log_in(database_url, ADMIN, password)
    before = users(database_url)
    assert before["admin@example.com"][1] == ["admin"]

    again = run_tecnorev("users", "create-admin", "--email", "admin@EXAMPLE.com", url=database_url)
    assert again.returncode == 1
    assert again.stderr.startswith("error: a user with email 'admin@example.com' already exists")
    assert "Traceback" not in again.stderr + again.stdout

    skipped = run_tecnorev(
        "users", "create-admin", "--email", ADMIN, "--if-missing", url=database_url
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "already exists" in skipped.stdout
    assert "password" not in skipped.stdout

    assert users(database_url) == before


def test_create_admin_takes_the_password_from_the_environment(database_url):
    migrate(database_url, "auth@head")
    secret = "from-the-environment-42"

    weak = run_tecnorev(
        "users", "create-admin", "--email", ADMIN, url=database_url,
        env={"TECNOREV_ADMIN_PASSWORD": "short"},
    )  # fmt: skip
    assert weak.returncode == 1
    assert weak.stderr.startswith("error: a password needs at least 10 characters")
    assert users(database_url) == {}

    created = run_tecnorev(
        "users", "create-admin", "--email", ADMIN, "--if-missing", url=database_url,
        env={"TECNOREV_ADMIN_PASSWORD": secret},
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert secret not in created.stdout
    assert can_log_in(database_url, ADMIN, secret)


def test_users_commands_refuse_a_database_without_the_auth_tables(database_url):
    for command in ("create-admin", "set-password"):
        result = run_tecnorev("users", command, "--email", ADMIN, url=database_url)
        assert result.returncode == 1
        assert result.stderr.startswith("error: the auth tables do not exist")
        assert "tecnorev db upgrade heads" in result.stderr
        assert "Traceback" not in result.stderr


def test_set_password_resets_it_and_ends_the_logins(database_url):
    migrate(database_url, "auth@head")
    engine = create_db_engine(database_url)
    with Session(engine) as session:
        user = create_user(session, "clerk@example.com", roles=["clerk"])
        service.open_login(session, user_id=user.id)
        session.commit()
        user_id = user.id

    reset = run_tecnorev(
        "users", "set-password", "--email", "CLERK@example.com", "--password",
        "a-brand-new-password", url=database_url,
    )  # fmt: skip
    assert reset.returncode == 0, reset.stderr
    assert "a-brand-new-password" not in reset.stdout
    assert can_log_in(database_url, "clerk@example.com", "a-brand-new-password")
    with Session(engine) as session:
        live = session.execute(
            sa.text("SELECT count(*) FROM refresh_token WHERE user_id = :u AND revoked_at IS NULL"),
            {"u": user_id},
        ).scalar()
        assert live == 0
        assert session.get(User, user_id).is_active

    unknown = run_tecnorev(
        "users", "set-password", "--email", "nobody@example.com", url=database_url
    )
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: there is no user with email 'nobody@example.com'")
    engine.dispose()
