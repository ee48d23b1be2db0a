"""What ``tecnorev serve`` serves: ``create_app()`` with its start-up objects frozen out of
the garbage collector's sight (run in a process of its own: freezing is for good)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from fastapi.testclient import TestClient
from tecnorev.api.serve import served_app

assert gc.get_freeze_count() == 0
app = served_app()
frozen = gc.get_freeze_count()
with TestClient(app) as client:
    assert client.get("/health").status_code == 200
print(frozen)
"""


def test_the_served_app_leaves_its_start_up_objects_out_of_collections(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env={"DATABASE_URL": f"sqlite:///{tmp_path / 'shop.db'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # the modules, tables, schemas and routes: far more than a handful of objects
    assert int(result.stdout.split()[-1]) > 50_000
