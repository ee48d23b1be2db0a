"""What sales refuses, each with the HTTP status and the stable code a client sees."""

from __future__ import annotations

from tecnorev.core.errors import Conflict, NotFound, RuleViolation


class CouponNotFound(NotFound):
    code = "coupon_not_found"


class CouponCodeTaken(Conflict):
    code = "coupon_code_taken"


class InvalidCouponValue(RuleViolation):
    """A percentage outside (0, 100], or a fixed amount that is not positive."""

    code = "invalid_coupon_value"


class InvalidValidityWindow(RuleViolation):
    code = "invalid_validity_window"


class UsageLimitBelowTimesUsed(RuleViolation):
    code = "usage_limit_below_times_used"


class CouponInactive(RuleViolation):
    code = "coupon_inactive"


class CouponNotYetValid(RuleViolation):
    code = "coupon_not_yet_valid"


class CouponExpired(RuleViolation):
    code = "coupon_expired"


class CouponExhausted(Conflict):
    code = "coupon_exhausted"


class OrderNotFound(NotFound):
    code = "order_not_found"


class EmptyOrder(RuleViolation):
    code = "empty_order"


class ProductUnavailable(RuleViolation):
    """A product of the order does not exist or is no longer sold."""

    code = "product_unavailable"


class OrderTooLarge(RuleViolation):
    """The order's amounts do not fit the money columns."""

    code = "order_too_large"


class IdempotencyKeyReused(Conflict):
    """The key already placed an order with different contents."""

    code = "idempotency_key_reused"


class InvalidTransition(Conflict):
    code = "invalid_transition"
