"""The inventory module's domain errors: each carries its HTTP status and a stable code."""

from __future__ import annotations

from tecnorev.core.errors import Conflict, NotFound, PermissionDenied, RuleViolation


class InsufficientStock(Conflict):
    """Details: ``{"shortages": [{"product_id", "requested", "available"}]}``, one entry per
    short line."""

    code = "insufficient_stock"


class UnknownBranch(NotFound):
    code = "branch_not_found"


class BranchInactive(RuleViolation):
    code = "branch_inactive"


class BranchCodeTaken(Conflict):
    code = "branch_code_taken"


class UnknownProduct(RuleViolation):
    """Details: ``{"product_ids": [...]}``: the ids that name no product."""

    code = "unknown_product"


class UnknownUser(NotFound):
    code = "user_not_found"


class NotStaff(NotFound):
    code = "staff_not_found"


class NotBranchStaff(PermissionDenied):
    """Stock is changed only at the caller's branches (every one with ``inventory:read_all``).
    A 403, not a 404: branches are public, so pretending this one is missing would hide
    nothing.  Details: ``{"branch_id"}``."""

    code = "not_branch_staff"


class InvalidQuantity(RuleViolation):
    code = "invalid_quantity"


class SameBranchTransfer(RuleViolation):
    code = "same_branch_transfer"
