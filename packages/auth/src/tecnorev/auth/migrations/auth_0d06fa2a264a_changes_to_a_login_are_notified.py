"""changes to a login are notified

On PostgreSQL, auth's tables announce on the ``tecnorev_auth`` channel every change that
alters what a request's caller may do, so API workers can reuse the callers they looked up
and forget one the moment it changes (``tecnorev.auth.callers``).  Triggers send them, so a
change made by hand in SQL is announced like one made through the API, and only when its
transaction commits:

- ``user``: deactivated or reactivated, its email changed, deleted (the user's id);
- ``user_role``: a role granted or taken away (the user's id);
- ``refresh_token``: a live login revoked or deleted (the user's id);
- ``role_permission``: a role's permissions changed, once per statement (``*``: everyone);
- any of them truncated (``*``).

Creating a trigger takes a brief lock that lets reads through; the statements only add
objects, so a worker of the previous release runs on alongside (it does not listen).
SQLite has no notifications: nothing to do there, nor in offline ``--sql`` mode for it.

Revision ID: auth_0d06fa2a264a
Revises: auth_68f68bf2a9a1
Create Date: 2026-12-07 14:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "auth_0d06fa2a264a"
down_revision: str | Sequence[str] | None = "auth_68f68bf2a9a1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = "tecnorev_auth_changed"

# table -> its triggers: name, events, level, condition
TRIGGERS = {
    "user": (
        (
            "auth_user_changed",
            "AFTER UPDATE OF is_active, email",
            "ROW",
            "WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active"
            " OR OLD.email IS DISTINCT FROM NEW.email)",
        ),
        ("auth_user_deleted", "AFTER DELETE", "ROW", ""),
    ),
    "user_role": (("auth_user_role_changed", "AFTER INSERT OR UPDATE OR DELETE", "ROW", ""),),
    "refresh_token": (
        ("auth_login_revoked", "AFTER UPDATE", "ROW", "WHEN (OLD.revoked_at IS NULL)"),
        ("auth_login_deleted", "AFTER DELETE", "ROW", "WHEN (OLD.revoked_at IS NULL)"),
    ),
    "role_permission": (
        ("auth_role_permission_changed", "AFTER INSERT OR UPDATE OR DELETE", "STATEMENT", ""),
    ),
}
TRUNCATED = "auth_{table}_truncated"


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_LEVEL = 'STATEMENT' THEN
                PERFORM pg_notify('tecnorev_auth', '*');
            ELSIF TG_TABLE_NAME = 'user' THEN
                PERFORM pg_notify('tecnorev_auth', OLD.id::text);
            ELSE
                IF TG_OP <> 'INSERT' THEN
                    PERFORM pg_notify('tecnorev_auth', OLD.user_id::text);
                END IF;
                IF TG_OP <> 'DELETE' THEN
                    PERFORM pg_notify('tecnorev_auth', NEW.user_id::text);
                END IF;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    for table, triggers in TRIGGERS.items():
        for name, when, level, condition in triggers:
            op.execute(
                f'CREATE TRIGGER {name} {when} ON "{table}" '
                f"FOR EACH {level} {condition} EXECUTE FUNCTION {FUNCTION}()"
            )
        op.execute(
            f'CREATE TRIGGER {TRUNCATED.format(table=table)} AFTER TRUNCATE ON "{table}" '
            f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table, triggers in TRIGGERS.items():
        for name, *_ in triggers:
            op.execute(f'DROP TRIGGER IF EXISTS {name} ON "{table}"')
        op.execute(f'DROP TRIGGER IF EXISTS {TRUNCATED.format(table=table)} ON "{table}"')
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
