"""What inventory counts for operators (``/metrics``): stock movements as they commit."""

from tecnorev.core.metrics import Counter

STOCK_MOVEMENTS = Counter(
    "tecnorev_stock_movements_total",
    "Stock movements recorded (one per product and branch), by reason",
    ["kind"],
)
