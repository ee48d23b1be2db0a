from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import select

from tecnorev.auth.models import Role, RolePermission, User, UserRole
from tecnorev.auth.permissions import PERMISSIONS
from tecnorev.testing.core import (
    alembic_config,
    assert_module_migrates,
    downgrade,
    migrate,
    migrated_session,
)


def test_branch_migrates_and_reverts(database_url):
    assert_module_migrates("auth", database_url)


@pytest.fixture
def session(database_url):
    with migrated_session(database_url, "auth@head") as session:
        yield session


def test_auth_alone_seeds_the_standard_roles_granting_only_its_own_codes(session):
    roles = {r.name: r.id for r in session.exec(select(Role))}
    assert set(roles) == {"admin", "manager", "clerk", "customer"}
    granted = {(rp.role_id, rp.permission) for rp in session.exec(select(RolePermission))}
    by_role = {name: {code for rid, code in granted if rid == id_} for name, id_ in roles.items()}
    assert by_role == {name: {p.code for p in PERMISSIONS if name in p.roles} for name in roles}
    assert by_role["admin"] == {"users:read", "users:manage"}
    assert by_role["customer"] == set()
    registered = session.execute(sa.text("SELECT code, module FROM permission")).all()
    assert {tuple(r) for r in registered} == {(p.code, "auth") for p in PERMISSIONS}


SEED = "auth_262deabaa823"  # the standard roles as first seeded: the clerk read every order
CLERK_SEES_ITS_BRANCHES = "auth_8c5580aaf960"
EVERY_BRANCH_IS_A_GRANT = "auth_346926648806"


def _grants(url: str, role: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            statement = (
                select(RolePermission.permission)
                .join(Role, Role.id == RolePermission.role_id)
                .where(Role.name == role)
                .order_by(RolePermission.permission)
            )
            return list(conn.execute(statement).scalars())
    finally:
        engine.dispose()


def test_the_clerk_loses_read_all_and_gets_it_back_idempotently(database_url):
    # the history as it ran: these revisions come before the codes moved to their modules
    from alembic import command

    migrate(database_url, SEED)
    seeded = _grants(database_url, "clerk")
    assert "orders:read_all" in seeded
    manager = _grants(database_url, "manager")

    migrate(database_url, CLERK_SEES_ITS_BRANCHES)
    without = [code for code in seeded if code != "orders:read_all"]
    assert _grants(database_url, "clerk") == without
    assert _grants(database_url, "manager") == manager

    downgrade(database_url, SEED)
    assert _grants(database_url, "clerk") == seeded
    assert _grants(database_url, "manager") == manager

    # Both directions again over a state they already produced: nothing fails, nothing doubles.
    command.stamp(alembic_config(database_url), CLERK_SEES_ITS_BRANCHES)
    downgrade(database_url, SEED)  # the grant is already there
    assert _grants(database_url, "clerk") == seeded
    migrate(database_url, CLERK_SEES_ITS_BRANCHES)
    command.stamp(alembic_config(database_url), SEED)
    migrate(database_url, CLERK_SEES_ITS_BRANCHES)  # the grant is already gone
    assert _grants(database_url, "clerk") == without


def test_emails_are_unique(session):
    session.add(User(email="a@example.com", hashed_password="h"))
    session.commit()
    session.add(User(email="a@example.com", hashed_password="h"))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_audit_columns_record_who_and_when_in_utc(session):
    admin = User(email="admin@example.com", hashed_password="h")
    session.add(admin)
    session.commit()
    clerk = User(email="clerk@example.com", hashed_password="h", created_by_id=admin.id)
    session.add(clerk)
    session.commit()
    session.refresh(clerk)
    assert clerk.created_by_id == admin.id
    assert clerk.created_at.tzinfo is not None
    assert abs((datetime.now(UTC) - clerk.created_at).total_seconds()) < 60


def test_deleting_a_user_keeps_rows_they_created_and_drops_their_roles(session):
    admin = User(email="boss@example.com", hashed_password="h")
    session.add(admin)
    session.commit()
    role = Role(name="auditor", created_by_id=admin.id)
    session.add(role)
    session.commit()
    session.add(UserRole(user_id=admin.id, role_id=role.id))
    session.commit()
    role_id = role.id
    session.delete(admin)
    session.commit()
    session.expire_all()
    assert session.get(Role, role_id).created_by_id is None
    assert session.exec(select(UserRole)).all() == []


def test_every_branch_reach_is_granted_to_admin_and_manager_and_taken_back_idempotently(
    database_url,
):
    from alembic import command

    reach = ["inventory:read_all", "payments:read_all", "shipments:read_all"]
    migrate(database_url, CLERK_SEES_ITS_BRANCHES)
    before = {role: _grants(database_url, role) for role in ("admin", "manager", "clerk")}
    assert not set(reach) & {code for codes in before.values() for code in codes}

    def granted() -> dict[str, list[str]]:
        return {role: _grants(database_url, role) for role in before}

    after = {
        "admin": sorted(before["admin"] + reach),
        "manager": sorted(before["manager"] + reach),
        "clerk": before["clerk"],
    }
    migrate(database_url, EVERY_BRANCH_IS_A_GRANT)
    assert granted() == after
    downgrade(database_url, CLERK_SEES_ITS_BRANCHES)
    assert granted() == before

    # Both directions again over a state they already produced: nothing fails, nothing doubles.
    migrate(database_url, EVERY_BRANCH_IS_A_GRANT)
    command.stamp(alembic_config(database_url), CLERK_SEES_ITS_BRANCHES)
    migrate(database_url, EVERY_BRANCH_IS_A_GRANT)  # the grants are already there
    assert granted() == after
    downgrade(database_url, CLERK_SEES_ITS_BRANCHES)
    command.stamp(alembic_config(database_url), EVERY_BRANCH_IS_A_GRANT)
    downgrade(database_url, CLERK_SEES_ITS_BRANCHES)  # the grants are already gone
    assert granted() == before
