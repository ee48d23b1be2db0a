"""What payments counts for operators (``/metrics``): payments and refunds as they commit."""

from tecnorev.core.metrics import Counter

PAYMENTS = Counter("tecnorev_payments_total", "Payments recorded, by currency", ["currency"])
REFUNDS = Counter("tecnorev_refunds_total", "Payments refunded")
