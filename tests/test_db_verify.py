"""``tecnorev db verify``: the CI gate.  Each failure is made on a scratch copy of a module's
source (first on the child's path, shadowing the installed one) and must be reported with the
module, the file and the line."""

from __future__ import annotations

import json
import re
import shutil
from importlib.metadata import requires
from pathlib import Path

import pytest

from tecnorev.testing.core import module_heads, run_tecnorev

REPO = Path(__file__).resolve().parents[1]
AUTH_HEAD = module_heads()["auth"]
# the auth revision catalog's first revision depends on (the seeded roles), not auth's head
CATALOG_NEEDS = "auth_262deabaa823"
CATALOG_HEAD = module_heads()["catalog"]
# catalog's first revision: it creates the tables and depends on auth's seeded roles
CATALOG_FIRST = "catalog_68c333c29785"
TITLES = {
    "heads": "one head per module, each branch inside its module",
    "releases": "release records match the revisions",
    "depends_on": "depends_on into declared dependencies, shipped by their lowest version",
    "edited": "no applied migration edited since",
    "models": "models match migrations, per module",
    "squashes": "each squash builds what its originals build",
    "reachable": "every table class imported by its models module",
}


class Scratch:
    """Copies of the auth and catalog sources (and, when asked, distribution metadata) in a
    folder put first on PYTHONPATH."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.src = tmp_path / "src"
        for name in ("auth", "catalog"):
            shutil.copytree(
                REPO / f"packages/{name}/src/tecnorev/{name}",
                self.src / f"tecnorev/{name}",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            # as before their first release was recorded: each test writes the record it needs
            (self.src / f"tecnorev/{name}/migrations/releases.toml").unlink()
            # ... and at that first version, with the requirements they have now
            self.distribution(f"tecnorev-{name}", "0.1.0", *(requires(f"tecnorev-{name}") or []))
        self.env = {"PYTHONPATH": str(self.src)}

    def root(self, module: str) -> Path:
        return self.src / "tecnorev" / module

    def run(self, *args: str, url: str) -> tuple[int, str]:
        result = run_tecnorev(*args, url=url, env=self.env, cwd=self.tmp)
        assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
        return result.returncode, result.stdout + result.stderr

    def verify(self, url: str, *args: str) -> tuple[int, dict]:
        code, output = self.run("db", "verify", "--json", *args, url=url)
        report = json.loads(output[output.index("{") :])
        assert report["exit_code"] == code
        return code, {check["name"]: check for check in report["checks"]}

    def add_revision(self, module: str, revision: str, down: str, depends_on: str | None) -> Path:
        path = self.root(module) / "migrations" / f"{revision}_step.py"
        path.write_text(
            '"""step"""\n\n'
            f'revision = "{revision}"\n'
            f'down_revision = "{down}"\n'
            "branch_labels = None\n"
            f"depends_on = {depends_on!r}\n\n\n"
            "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
        )
        return path

    def distribution(self, name: str, version: str, *requires: str) -> None:
        """Metadata that shadows the installed distribution's: another version, other
        requirements (what a released wheel would carry)."""
        for earlier in self.src.glob(f"{name.replace('-', '_')}-*.dist-info"):
            shutil.rmtree(earlier)  # one version of a distribution at a time, as pip leaves it
        info = self.src / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        lines += [f"Requires-Dist: {r}" for r in requires]
        (info / "METADATA").write_text("\n".join(lines) + "\n")
        # it hides the installed distribution, entry point included
        module = name.removeprefix("tecnorev-")
        (info / "entry_points.txt").write_text(
            f"[tecnorev.modules]\n{module} = tecnorev.{module}:module\n"
        )


@pytest.fixture
def scratch(tmp_path) -> Scratch:
    return Scratch(tmp_path)


def line_of(path: Path, pattern: str) -> int:
    text = path.read_text()
    return text.count("\n", 0, re.search(pattern, text, re.M).start()) + 1


def failed(checks: dict) -> set[str]:
    return {name for name, check in checks.items() if check["status"] == "failed"}


def test_the_installed_modules_pass(database_url):
    assert run_tecnorev("db", "upgrade", "heads", url=database_url).returncode == 0
    result = run_tecnorev("db", "verify", url=database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"ok    {TITLES['heads']}"
    assert lines[1] == f"ok    {TITLES['releases']}"
    assert lines[2] == f"ok    {TITLES['depends_on']}"
    assert lines[3].startswith(f"ok    {TITLES['edited']} (against ")
    assert lines[4] == f"ok    {TITLES['models']} (compared on a scratch SQLite db)"
    assert lines[5] == f"ok    {TITLES['squashes']} (no squash ships its originals beside it)"
    assert lines[6] == f"ok    {TITLES['reachable']}"
    assert lines[7] == "verify: all checks passed"
    assert "Running upgrade" not in result.stdout + result.stderr


def test_models_compared_on_a_throwaway_postgres_database(postgres_url):
    result = run_tecnorev("db", "verify", "--postgres", "--json", url=postgres_url)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    models = next(c for c in report["checks"] if c["name"] == "models")
    assert models == {
        "name": "models",
        "title": TITLES["models"],
        "status": "ok",
        "note": "compared on a scratch PostgreSQL db",
        "problems": [],
    }
    edited = next(c for c in report["checks"] if c["name"] == "edited")
    assert edited["status"] == "ok"  # an empty database: nothing applied, nothing edited


def test_postgres_scratch_needs_a_postgres_server(tmp_path):
    result = run_tecnorev("db", "verify", "--postgres", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2
    assert (
        "error: --postgres creates the scratch database on the configured PostgreSQL server, "
        "but DATABASE_URL names sqlite"
    ) in result.stderr


def test_an_edited_applied_migration(scratch, database_url):
    code, _ = scratch.run("db", "upgrade", "heads", url=database_url)
    assert code == 0
    (applied,) = (scratch.root("catalog") / "migrations").glob(f"{CATALOG_HEAD}_*.py")
    applied.write_text(applied.read_text() + "\n# a later afterthought\n")

    code, checks = scratch.verify(database_url)
    assert code == 1
    assert failed(checks) == {"edited"}
    (problem,) = checks["edited"]["problems"]
    assert problem["module"] == "catalog"
    assert problem["path"] == str(applied)
    assert problem["message"].startswith(f"{CATALOG_HEAD} was edited after it was applied to ")
    assert problem["message"].endswith(
        "restore the file and put the change in a new revision, or, for a reviewed edit that "
        f"changes nothing the database needs, tecnorev db repair {CATALOG_HEAD} --reason '...'"
    )

    code, output = scratch.run("db", "verify", url=database_url)
    assert code == 1
    assert f"FAIL  {TITLES['edited']}" in output
    assert f"      catalog: {applied}: {CATALOG_HEAD} was edited after it was applied" in output
    assert output.rstrip().endswith("verify: 1 problem(s)")


def test_edited_check_is_skipped_when_the_database_is_unreachable(tmp_path):
    url = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"
    result = run_tecnorev("db", "verify", url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"skip  {TITLES['edited']} (skipped: cannot connect to the database at {url}"
    ) in result.stdout
    missing = f"sqlite:///{tmp_path / 'never.db'}"
    result = run_tecnorev("db", "verify", url=missing)
    assert result.returncode == 0
    assert f"(no database at {missing} yet: nothing applied to compare)" in result.stdout
    assert not (tmp_path / "never.db").exists()


def test_a_table_class_the_models_module_does_not_import(scratch, tmp_path):
    extra = scratch.root("catalog") / "wishlist.py"
    extra.write_text(
        '"""Forgotten in models.py."""\n\n'
        "from sqlmodel import Field, SQLModel\n\n\n"
        "class Wishlist(SQLModel, table=True):\n"
        "    id: int | None = Field(default=None, primary_key=True)\n"
        "    name: str = Field(max_length=80)\n"
    )
    code, checks = scratch.verify(f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1
    assert failed(checks) == {"reachable"}
    assert checks["reachable"]["problems"] == [
        {
            "module": "catalog",
            "message": "table class Wishlist (table 'wishlist') in tecnorev.catalog.wishlist is "
            "not imported by tecnorev.catalog.models, so autogenerate and verify never see it: "
            "move it to tecnorev.catalog.models or import it there",
            "path": str(extra),
            "line": 6,
        }
    ]
    code, output = scratch.run("db", "verify", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert f"      catalog: {extra}:6: table class Wishlist (table 'wishlist')" in output


def test_a_submodule_that_fails_to_import_is_reported(scratch, tmp_path):
    broken = scratch.root("catalog") / "service.py"
    broken.write_text("import os\n\nraise RuntimeError('half written')\n")
    code, checks = scratch.verify(f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1
    # modules importing the service (catalog's routes, sales...) fail with it: each is named
    problems = checks["reachable"]["problems"]
    assert all("RuntimeError: half written" in p["message"] for p in problems)
    assert {
        "module": "catalog",
        "message": "tecnorev.catalog.service cannot be imported (RuntimeError: half written), "
        "so its table classes cannot be checked",
        "path": str(broken),
        "line": 3,
    } in problems


def test_a_model_change_without_its_migration(scratch, database_url):
    models = scratch.root("catalog") / "models.py"
    anchor = "    category_id: int | None"
    models.write_text(
        models.read_text().replace(
            anchor, "    barcode: str | None = Field(default=None, max_length=32)\n" + anchor, 1
        )
    )
    args = ("--postgres",) if database_url.startswith("postgresql") else ()
    code, checks = scratch.verify(database_url, *args)
    assert code == 1
    assert failed(checks) == {"models"}
    kind = "PostgreSQL" if args else "SQLite"
    assert checks["models"]["note"] == f"compared on a scratch {kind} db"
    assert checks["models"]["problems"] == [
        {
            "module": "catalog",
            "message": "models and migrations differ: add column product.barcode; write the "
            "revision: tecnorev db generate catalog -m '...'",
            "path": str(models),
            "line": line_of(models, r"^class Product\b"),
        }
    ]


def test_a_model_removed_while_its_migration_still_creates_the_table(scratch, database_url):
    models = scratch.root("catalog") / "models.py"
    text = models.read_text()
    models.write_text(text[: text.index("class ProductImage")])
    args = ("--postgres",) if database_url.startswith("postgresql") else ()
    code, checks = scratch.verify(database_url, *args)
    assert code == 1
    # the service, which uses the class, no longer imports: reported besides the table
    assert failed(checks) == {"models", "reachable"}
    (first,) = (scratch.root("catalog") / "migrations").glob(f"{CATALOG_FIRST}_*.py")
    assert checks["models"]["problems"] == [
        {
            "module": "catalog",
            "message": "table 'product_image' is created by the migrations but no model "
            "defines it: restore its class, or drop it in a new revision (tecnorev db generate "
            "catalog -m '...' --empty; autogenerate never drops a table it does not own)",
            "path": str(first),
            "line": line_of(first, r"create_table\(\s*\"product_image\""),
        }
    ]


def test_a_migration_that_fails_on_the_scratch_database(scratch, tmp_path):
    path = scratch.add_revision("catalog", "catalog_0123456789ab", CATALOG_HEAD, None)
    path.write_text(
        path.read_text().replace("def upgrade():\n    pass", "def upgrade():\n    undefined_call()")
    )
    code, checks = scratch.verify(f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1
    (problem,) = checks["models"]["problems"]
    assert problem["message"] == (
        "migrating a scratch database to every head failed: NameError: name 'undefined_call' "
        "is not defined"
    )
    assert problem["path"] == str(path)
    assert problem["line"] == line_of(path, r"undefined_call")


def test_two_heads_in_one_module(scratch, tmp_path):
    scratch.add_revision("catalog", "catalog_aaaaaaaaaaaa", CATALOG_HEAD, None)
    scratch.add_revision("catalog", "catalog_bbbbbbbbbbbb", CATALOG_HEAD, None)
    code, checks = scratch.verify(f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1
    assert failed(checks) == {"heads"}
    (problem,) = checks["heads"]["problems"]
    assert problem["module"] == "catalog"
    assert problem["message"].startswith("2 heads: catalog_aaaaaaaaaaaa (")
    assert problem["message"].endswith(
        "join them: tecnorev db merge -m 'merge catalog' catalog_aaaaaaaaaaaa catalog_bbbbbbbbbbbb"
    )


def test_a_branch_that_continues_another_module(scratch, tmp_path):
    path = scratch.add_revision("catalog", "catalog_0123456789ab", AUTH_HEAD, None)
    code, checks = scratch.verify(f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1
    problems = checks["heads"]["problems"]
    assert {
        "module": "catalog",
        "message": "catalog_0123456789ab continues module 'auth''s branch (down_revision "
        f"{AUTH_HEAD}); a revision extends its own module's branch and names another "
        "module's revision in depends_on instead",
        "path": str(path),
        "line": 4,
    } in problems


def test_depends_on_into_a_module_that_is_not_a_declared_dependency(scratch, tmp_path):
    # catalog does not depend on payments
    path = scratch.add_revision(
        "catalog", "catalog_0123456789ab", CATALOG_HEAD, "payments_7d5c61eff56a"
    )
    code, checks = scratch.verify(f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1
    assert failed(checks) == {"depends_on"}
    assert checks["depends_on"]["problems"] == [
        {
            "module": "catalog",
            "message": "catalog_0123456789ab depends on payments_7d5c61eff56a of module "
            "'payments', which 'catalog' does not declare as a dependency: add 'payments' to "
            "depends_on in the Module of tecnorev.catalog and to its distribution's "
            "dependencies, or drop the reference",
            "path": str(path),
            "line": 6,
        }
    ]
    code, output = scratch.run("db", "verify", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert (
        f"      catalog: {path}:6: catalog_0123456789ab depends on payments_7d5c61eff56a" in output
    )


def test_depends_on_a_revision_the_lowest_accepted_version_lacks(scratch, tmp_path):
    """auth gains a revision and catalog's new revision depends on it; catalog's distribution
    accepts tecnorev-auth>=0.1.0."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    scratch.add_revision("auth", "auth_0123456789ab", AUTH_HEAD, None)
    path = scratch.add_revision(
        "catalog", "catalog_0123456789ab", CATALOG_HEAD, "auth_0123456789ab"
    )
    releases = scratch.root("auth") / "migrations" / "releases.toml"

    # No release recorded: the revision ships in the version installed now (0.1.0), which
    # catalog accepts.
    code, checks = scratch.verify(url)
    assert code == 0, checks

    # 0.1.0 was released without it, and auth still says 0.1.0
    releases.write_text(f'"0.1.0" = ["{AUTH_HEAD}"]\n')
    code, checks = scratch.verify(url)
    assert code == 1
    assert checks["depends_on"]["problems"] == [
        {
            "module": "catalog",
            "message": "catalog_0123456789ab depends on auth_0123456789ab, but "
            "auth_0123456789ab is not in release 0.1.0 of tecnorev-auth as recorded in "
            f"{releases}, yet the distribution's version is still 0.1.0: raise its version "
            "for the release that will ship the revision",
            "path": str(path),
            "line": 6,
        }
    ]

    # auth is now 0.1.1 (pip keeps every installed module's requirements met: they all
    # accept <0.2), but catalog still accepts 0.1.0
    scratch.distribution("tecnorev-auth", "0.1.1", "tecnorev-core<0.2,>=0.1.0")
    code, checks = scratch.verify(url)
    assert code == 1
    (problem,) = checks["depends_on"]["problems"]
    assert problem["message"] == (
        "catalog_0123456789ab depends on auth_0123456789ab, which tecnorev-auth first ships in "
        "0.1.1 (the installed version; no release recorded ships it yet); tecnorev-catalog "
        "accepts tecnorev-auth<0.2,>=0.1.0 (from 0.1.0), which may lack it: require "
        "'tecnorev-auth>=0.1.1' in the dependencies of tecnorev-catalog"
    )

    # 0.1.1 released with it, and catalog 0.1.1 requires it
    releases.write_text(f'"0.1.0" = ["{AUTH_HEAD}"]\n"0.1.1" = "auth_0123456789ab"\n')
    scratch.distribution("tecnorev-catalog", "0.1.1", "tecnorev-auth>=0.1.1,<0.2")
    code, checks = scratch.verify(url)
    # With no record of catalog's releases, its first revision is taken to ship only in the
    # 0.1.1 installed now, which inventory (accepting 0.1.0) may not get.
    assert code == 1
    (problem,) = checks["depends_on"]["problems"]
    assert problem["module"] == "inventory"
    assert (
        "depends on catalog_68c333c29785, which tecnorev-catalog first ships in 0.1.1"
        in (problem["message"])
    )
    catalog_releases = scratch.root("catalog") / "migrations" / "releases.toml"
    catalog_releases.write_text(f'"0.1.0" = "{CATALOG_HEAD}"\n')
    code, checks = scratch.verify(url)
    assert code == 0, checks


def test_an_installation_that_breaks_a_requirement_is_refused(scratch, tmp_path):
    """pip keeps requirements met; a --no-deps install or a hand downgrade does not."""
    scratch.distribution("tecnorev-auth", "0.2.0", "tecnorev-core<0.2,>=0.1.0")
    code, output = scratch.run("db", "status", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 4
    assert output.startswith("error: the installed modules do not work together: ")
    assert (
        "tecnorev-catalog 0.1.0 (module catalog) works with tecnorev-auth<0.2,>=0.1.0, but "
        "tecnorev-auth 0.2.0 is installed: pip install 'tecnorev-auth<0.2,>=0.1.0', or "
        "install a release of tecnorev-catalog that works with tecnorev-auth 0.2.0"
    ) in output
    for dependent in ("inventory", "sales", "logistics", "payments"):
        assert f"(module {dependent}) works with tecnorev-auth<0.2,>=0.1.0" in output
    # nor does the API serve them
    code, output = scratch.run("serve", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 4
    assert output.startswith("error: the installed modules do not work together: ")


def test_depends_on_a_distribution_not_required_directly(scratch, tmp_path):
    # catalog's first revision depends on auth's; this catalog does not require tecnorev-auth
    scratch.distribution("tecnorev-catalog", "0.1.0", "tecnorev-core>=0.1.0")
    code, checks = scratch.verify(f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1
    (first,) = (scratch.root("catalog") / "migrations").glob(f"{CATALOG_FIRST}_*.py")
    # both of catalog's revisions reach into auth; the first one is examined here
    problems = checks["depends_on"]["problems"]
    assert {p["module"] for p in problems} == {"catalog"} and len(problems) == 2
    (problem,) = [p for p in problems if p["path"] == str(first)]
    assert problem["line"] == line_of(first, r"^depends_on")
    assert problem["message"] == (
        f"{CATALOG_FIRST} depends on {CATALOG_NEEDS}, which tecnorev-auth first ships in 0.1.0 (the "
        "installed version; no release recorded ships it yet); tecnorev-catalog does not itself "
        "require tecnorev-auth, so nothing guarantees that version: require "
        "'tecnorev-auth>=0.1.0' in the dependencies of tecnorev-catalog"
    )


def test_a_reference_to_a_revision_nobody_has(scratch, tmp_path):
    path = scratch.add_revision(
        "catalog", "catalog_0123456789ab", CATALOG_HEAD, "loyalty_0123456789ab"
    )
    code, output = scratch.run("db", "verify", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 4
    assert (
        f"revision 'loyalty_0123456789ab' is named as a down_revision or in depends_on "
        f"(named in {path}), but no installed module has it"
    ) in output
    code, output = scratch.run("db", "status", url=f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 4
    assert "error: revision 'loyalty_0123456789ab' is named as a down_revision" in output
