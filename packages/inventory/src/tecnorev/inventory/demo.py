"""Demo data of the inventory module: three branches, the demo clerk working at one, and their
opening stock, received through the service so the ledger accounts for every unit (plus one
transfer between branches and a few count corrections).

Leaves for later loaders: ``inventory.branch_ids`` (code → id) and ``inventory.stock``
(branch id → product id → units), the stock the demo puts there before anything is sold.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from tecnorev.inventory.models import Branch, BranchStaff, InventoryMovement, MovementReason
from tecnorev.inventory.service import (
    adjust_stock,
    assign_staff,
    create_branch,
    receive_stock,
    transfer_stock,
)

if TYPE_CHECKING:
    from tecnorev.catalog.demo import DemoProduct
    from tecnorev.core.demo import DemoContext

# (code, name, address)
BRANCHES: tuple[tuple[str, str, str], ...] = (
    ("CENTRO", "Tecno Rev Centro", "Av. San Martín 1450, Centro"),
    ("NORTE", "Tecno Rev Norte", "Av. del Libertador 5200, Zona Norte"),
    ("SUR", "Tecno Rev Sur", "Calle Belgrano 780, Zona Sur"),
)
CLERK_BRANCH = "CENTRO"
# code -> (share of the active products the branch carries, fewest and most units received)
ASSORTMENT: dict[str, tuple[float, int, int]] = {
    "CENTRO": (1.0, 20, 80),
    "NORTE": (0.8, 10, 50),
    "SUR": (0.7, 5, 40),
}
TRANSFER = ("CENTRO", "SUR", "DEMO-TRF-0001", "restocking Sur from Centro")
TRANSFER_LINES = 6
# (branch, units, reference, reason)
ADJUSTMENTS: tuple[tuple[str, int, str, str], ...] = (
    ("NORTE", -1, "DEMO-ADJ-0001", "damaged in the shop"),
    ("SUR", 2, "DEMO-ADJ-0002", "recount: found in the back room"),
    ("CENTRO", -1, "DEMO-ADJ-0003", "missing at the stocktake"),
)


def receipt_reference(code: str) -> str:
    return f"DEMO-RCV-{code}"


@dataclass
class StockPlan:
    """Product ids and units, by branch code."""

    receipts: dict[str, dict[int, int]] = field(default_factory=dict)
    transfer: dict[int, int] = field(default_factory=dict)
    adjustments: list[tuple[str, int, int, str, str]] = field(default_factory=list)

    def expected(self) -> dict[str, dict[int, int]]:
        """The stock of each branch once every step is done."""
        stock = {code: dict(lines) for code, lines in self.receipts.items()}
        source, target, _, _ = TRANSFER
        for product_id, units in self.transfer.items():
            stock[source][product_id] -= units
            stock[target][product_id] = stock[target].get(product_id, 0) + units
        for code, product_id, delta, _, _ in self.adjustments:
            stock[code][product_id] = stock[code].get(product_id, 0) + delta
        return stock


def plan_stock(rng: random.Random, products: Sequence[DemoProduct]) -> StockPlan:
    plan = StockPlan()
    active = [p.id for p in products if p.is_active]
    for code, _, _ in BRANCHES:
        share, fewest, most = ASSORTMENT[code]
        carried = sorted(rng.sample(active, round(len(active) * share))) if active else []
        plan.receipts[code] = {product_id: rng.randint(fewest, most) for product_id in carried}
    source, target, _, _ = TRANSFER
    missing = [p for p in plan.receipts[source] if p not in plan.receipts[target]]
    for product_id in sorted(rng.sample(missing, min(TRANSFER_LINES, len(missing)))):
        plan.transfer[product_id] = rng.randint(3, 8)
    for code, delta, reference, reason in ADJUSTMENTS:
        candidates = sorted(set(plan.receipts[code]) - set(plan.transfer))
        if candidates:
            plan.adjustments.append((code, rng.choice(candidates), delta, reference, reason))
    return plan


def load(session: Session, ctx: DemoContext) -> str:
    rng = random.Random(ctx.random.getrandbits(64))
    products: Sequence[DemoProduct] = ctx.values.get("catalog.products", ())
    plan = plan_stock(rng, products)
    manager_id = ctx.values.get("auth.manager_id")
    clerk_id = ctx.values.get("auth.clerk_id")
    added: list[str] = []

    # cast: an id read from the table is never NULL (the model's ``int | None`` is for a new row)
    branch_ids = cast(
        dict[str, int],
        dict(
            session.exec(
                select(Branch.code, Branch.id).where(
                    col(Branch.code).in_([c for c, _, _ in BRANCHES])
                )
            ).all()
        ),
    )
    new_branches = 0
    for code, name, address in BRANCHES:
        if code not in branch_ids:
            branch = create_branch(
                session, code=code, name=name, address=address, author_id=manager_id
            )
            assert branch.id is not None  # set by the flush
            branch_ids[code] = branch.id
            new_branches += 1
    if new_branches:
        added.append(f"{new_branches} branches")
    ctx.values["inventory.branch_ids"] = dict(branch_ids)

    if clerk_id is not None:
        staff_key = (branch_ids[CLERK_BRANCH], clerk_id)
        if session.get(BranchStaff, staff_key) is None:
            assign_staff(session, branch_id=staff_key[0], user_id=clerk_id)
            added.append(f"the clerk as staff of {CLERK_BRANCH}")

    m = InventoryMovement
    received = {
        (branch_id, product_id)
        for branch_id, product_id in session.execute(
            sa.select(col(m.branch_id), col(m.product_id)).where(
                col(m.reason) == MovementReason.RECEIPT,
                col(m.reference).in_([receipt_reference(code) for code, _, _ in BRANCHES]),
            )
        )
    }
    receipts = 0
    for code, lines in plan.receipts.items():
        branch_id = branch_ids[code]
        missing = {p: units for p, units in lines.items() if (branch_id, p) not in received}
        if missing:
            receive_stock(
                session,
                branch_id=branch_id,
                quantities=missing,
                reference=receipt_reference(code),
                note="opening stock",
                author_id=manager_id,
            )
            receipts += len(missing)
    if receipts:
        added.append(f"{receipts} stock receipts")

    done = set(
        session.execute(
            sa.select(col(m.reference)).where(
                col(m.reference).in_([TRANSFER[2], *(a[2] for a in ADJUSTMENTS)])
            )
        ).scalars()
    )
    source, target, reference, note = TRANSFER
    if plan.transfer and reference not in done:
        transfer_stock(
            session,
            from_branch_id=branch_ids[source],
            to_branch_id=branch_ids[target],
            quantities=plan.transfer,
            reference=reference,
            note=note,
            author_id=manager_id,
        )
        added.append(f"a transfer of {len(plan.transfer)} products")
    adjusted = 0
    for code, product_id, delta, reference, reason in plan.adjustments:
        if reference not in done:
            adjust_stock(
                session,
                branch_id=branch_ids[code],
                product_id=product_id,
                quantity_delta=delta,
                reason=reason,
                reference=reference,
                author_id=clerk_id if code == CLERK_BRANCH else manager_id,
            )
            adjusted += 1
    if adjusted:
        added.append(f"{adjusted} stock adjustments")

    ctx.values["inventory.stock"] = {
        branch_ids[code]: lines for code, lines in plan.expected().items()
    }
    if not added:
        return f"{len(BRANCHES)} branches and their stock already there"
    return "added " + ", ".join(added)
