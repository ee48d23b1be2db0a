"""What payments refuses, each with the HTTP status and the stable code a client sees."""

from __future__ import annotations

from tecnorev.core.errors import Conflict, NotFound, RuleViolation


class PaymentNotFound(NotFound):
    code = "payment_not_found"


class PaymentReferenceTaken(Conflict):
    """The provider already reported this payment (a repeated callback, say)."""

    code = "payment_reference_taken"


class OrderCancelled(Conflict):
    code = "order_cancelled"


class Overpayment(RuleViolation):
    """The order's succeeded payments would add up to more than its total."""

    code = "overpayment"


class CurrencyMismatch(RuleViolation):
    """An order's payments are added up, so they must share one currency."""

    code = "currency_mismatch"
