"""A fresh ``tecnorev db upgrade heads`` before and after ``tecnorev db squash``.

A generated module of R revisions (each creating a small table with an index; see
generate_tree.py) is migrated onto fresh databases, then squashed into one revision and
migrated again.  The figures are the median and minimum wall time of the whole command (the
installed modules' revisions included, the same on both sides), their ratio, and the generated
module's own share (minus runs without it).  Timings are reported, never asserted.

    python bench/bench_squash.py                    # 200 revisions, SQLite, 5 runs each
    python bench/bench_squash.py --revisions 500 --runs 3
    python bench/bench_squash.py --postgres         # also on TEST_DATABASE_URL's server
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate_tree import generate_tree, module_name  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def tecnorev(env: dict[str, str], cwd: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import sys; from tecnorev.core.cli import main; sys.exit(main())",
         "db", *args],
        env=env, cwd=cwd, check=True, capture_output=True, timeout=1800,
    )  # fmt: skip
    return time.perf_counter() - started


def fresh_sqlite(root: Path) -> str:
    return f"sqlite:///{root / f'{secrets.token_hex(4)}.db'}"


class Postgres:
    """Fresh databases on one server, dropped at the end."""

    def __init__(self, url: str) -> None:
        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        self.url = sa.make_url(url)
        self.names: list[str] = []

    def fresh(self, _root: Path) -> str:
        name = f"bench_squash_{secrets.token_hex(4)}"
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        with self.admin.connect() as connection:
            for name in self.names:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.dispose()


def measure(env: dict[str, str], root: Path, fresh, runs: int) -> list[float]:  # noqa: ANN001
    return [
        tecnorev({**env, "DATABASE_URL": fresh(root)}, root, "upgrade", "heads")
        for _ in range(runs)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-squash-") as tmp:
        root = Path(tmp)
        tree = generate_tree(root / "tree", 1, args.revisions)
        env = {**os.environ, "PYTHONPATH": str(tree.site)}
        backends = [("SQLite", fresh_sqlite, None)]
        if args.postgres:
            server = Postgres(os.environ.get("TEST_DATABASE_URL") or DEFAULT_POSTGRES)
            backends.append(("PostgreSQL", server.fresh, server))
        module = module_name(0)
        print(f"fresh 'tecnorev db upgrade heads': module {module} of {args.revisions} revisions")
        try:
            for label, fresh, _ in backends:
                alone = measure(dict(os.environ), root, fresh, args.runs)
                before = measure(env, root, fresh, args.runs)
                tecnorev({**env, "DATABASE_URL": fresh_sqlite(root)}, root, "squash", module)
                after = measure(env, root, fresh, args.runs)
                for squashed in tree.site.glob(f"*{module}/migrations/*_squash.py"):
                    squashed.unlink()  # the next backend starts from the originals again
                b, a = statistics.median(before), statistics.median(after)
                base = statistics.median(alone)
                print(
                    f"  {label:<10}  before: median {b:6.2f} s (min {min(before):.2f})  "
                    f"after: median {a:6.2f} s (min {min(after):.2f})  "
                    f"after/before {a / b:.2f}  ({args.runs} runs each)\n"
                    f"  {'':<10}  the module's own share: {b - base:.2f} s -> {a - base:.2f} s "
                    f"(installed modules alone: {base:.2f} s)"
                )
        finally:
            for _, _, server in backends:
                if server is not None:
                    server.close()


if __name__ == "__main__":
    main()
