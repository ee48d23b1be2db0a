"""What auth counts for operators (``/metrics``): failed and throttled logins."""

from tecnorev.core.metrics import Counter

LOGIN_FAILURES = Counter(
    "tecnorev_login_failures_total",
    "Logins refused for a wrong password, an unknown email or a deactivated user",
)
LOGINS_THROTTLED = Counter(
    "tecnorev_logins_throttled_total",
    "Logins refused unchecked: too many failures for the account or from the address",
)
