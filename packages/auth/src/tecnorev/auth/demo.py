"""Demo data of the auth module: one user per role (the admin is made separately, with
``tecnorev users create-admin``), all sharing one password.

Leaves for later loaders: ``auth.manager_id``, ``auth.clerk_id`` and ``auth.customer_ids``
(a list, always in the same order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from sqlmodel import Session, col, select

from tecnorev.auth.models import Role, User, UserRole
from tecnorev.auth.security import hash_password
from tecnorev.core.errors import ConfigError

if TYPE_CHECKING:
    from tecnorev.core.demo import DemoContext

DEMO_PASSWORD = "tecnorev-demo-2026"

MANAGER = "manager@example.com"
CLERK = "clerk@example.com"
CUSTOMERS = ("ana@example.com", "bruno@example.com", "carla@example.com")

# (email, full name, role)
USERS: tuple[tuple[str, str, str], ...] = (
    (MANAGER, "Marta Ruiz", "manager"),
    (CLERK, "Diego Fernández", "clerk"),
    (CUSTOMERS[0], "Ana Torres", "customer"),
    (CUSTOMERS[1], "Bruno Silva", "customer"),
    (CUSTOMERS[2], "Carla Méndez", "customer"),
)


def load(session: Session, ctx: DemoContext) -> str:
    emails = [email for email, _, _ in USERS]
    # cast: an id read from the table is never NULL (the model's ``int | None`` is for a new row)
    ids = cast(
        dict[str, int],
        dict(session.exec(select(User.email, User.id).where(col(User.email).in_(emails))).all()),
    )
    missing = [user for user in USERS if user[0] not in ids]
    if missing:
        roles = {role for _, _, role in missing}
        role_ids = cast(
            dict[str, int],
            dict(session.exec(select(Role.name, Role.id).where(col(Role.name).in_(roles))).all()),
        )
        if roles - set(role_ids):
            raise ConfigError(
                f"the standard roles {', '.join(sorted(roles - set(role_ids)))} are missing; "
                "they come with the auth migrations ('tecnorev db upgrade heads')"
            )
        hashed = hash_password(DEMO_PASSWORD)  # argon2 is slow on purpose: once for all
        for email, full_name, role in missing:
            user = User(email=email, full_name=full_name, hashed_password=hashed)
            session.add(user)
            session.flush()
            assert user.id is not None  # set by the flush
            session.add(UserRole(user_id=user.id, role_id=role_ids[role]))
            ids[email] = user.id
        session.flush()

    ctx.values["auth.manager_id"] = ids[MANAGER]
    ctx.values["auth.clerk_id"] = ids[CLERK]
    ctx.values["auth.customer_ids"] = [ids[email] for email in CUSTOMERS]

    if not missing:
        return f"{len(USERS)} users already there (manager, clerk, {len(CUSTOMERS)} customers)"
    added = ", ".join(email for email, _, _ in missing)
    return f"added {len(missing)} users ({added}); password of each: {DEMO_PASSWORD}"
