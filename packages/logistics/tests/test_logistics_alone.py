"""Logistics needs sales and what sales needs, nothing else: it runs and is tested without
any other module downstream of sales (payments among them) installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tecnorev.sales.models import OrderStatus

TESTS = Path(__file__).parent


def test_shipments_work_on_an_app_of_logistics_and_its_dependencies(shop_without_others):
    shop = shop_without_others
    paths = set(shop.client.app.openapi()["paths"])
    assert any(p.startswith("/api/v1/logistics/") for p in paths)
    assert not any(p.startswith("/api/v1/payments") for p in paths)
    assert "payment" not in sa.inspect(shop.engine).get_table_names()

    order_id = shop.order()
    sid = shop.create(order_id, "TRK-1").json()["id"]
    assert shop.act(sid, "ship").status_code == 200
    assert shop.act(sid, "deliver").status_code == 200
    assert shop.order_status(order_id) is OrderStatus.DELIVERED
    shop.refused(shop.create(shop.order(OrderStatus.PENDING), "TRK-2"), 409, "order_not_confirmed")


def test_neither_the_code_nor_its_tests_import_payments():
    modules = [
        "tecnorev.logistics.service",
        "tecnorev.logistics.routes",
        "tecnorev.logistics.models",
    ]
    # conftest.py and every test module of this package, loaded as pytest would.
    test_files = sorted(str(path) for path in TESTS.glob("*.py"))
    script = (
        "import importlib, importlib.util, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"for i, path in enumerate({test_files!r}):\n"
        "    spec = importlib.util.spec_from_file_location(f'logistics_test_{i}', path)\n"
        "    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('tecnorev.payments'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
