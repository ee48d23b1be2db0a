"""What sales counts for operators (``/metrics``): orders as they commit."""

from tecnorev.core.metrics import Counter

ORDERS_PLACED = Counter("tecnorev_orders_placed_total", "Orders placed (replays not counted)")
ORDERS_CANCELLED = Counter("tecnorev_orders_cancelled_total", "Orders cancelled")
