"""Development and CI sessions for the Tecno Rev monorepo.

Plain ``nox`` runs the CI suite (lint, tests, package, wheels); ``python3 dev.py test`` does the
same on a machine that has only Python.  ``nox -l`` lists every session.

Two rules shape this file:

* Outside ``tests`` and ``run`` (editable, for development), a ``tecnorev-*`` distribution is
  only ever installed from our own wheelhouse with the package index switched off.  Anyone can
  publish a ``tecnorev-*`` name on the public index; a per-package environment that fell back to
  it would test somebody else's code.
* A package proves it stands on its own: installed from wheels with only its declared dependencies,
  its tests copied out of the repository, its migrations run from an empty directory.
"""

from __future__ import annotations

import graphlib
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import tomllib
import urllib.parse
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TextIO

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

nox.needs_version = ">=2025.2"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "no"  # every session starts from a fresh environment
nox.options.sessions = ["lint", "tests", "package", "wheels", "rehearsal"]  # `nox` = CI

ROOT = Path(__file__).resolve().parent
ROOT_PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DIST = ROOT / "dist"
WHEELHOUSE = ROOT / ".nox" / "_wheelhouse"
COVERAGE = ROOT / ".nox" / "_coverage" / ".coverage"  # the tests session's data file
BUILD_TOOLS = ROOT / ".nox" / "_build-tools"  # a venv holding hatch, kept out of tested envs
PIP_OFFLINE = ["--isolated", "--no-index", "--find-links"]  # + WHEELHOUSE; see _install_from_wheels
DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


# --------------------------------------------------------------------------- the packages


@dataclass(frozen=True)
class Package:
    """One distribution of the monorepo, read from its pyproject.toml."""

    short: str  # "sales": the session id and the folder name
    path: Path

    @cached_property
    def pyproject(self) -> dict:
        return tomllib.loads((self.path / "pyproject.toml").read_text(encoding="utf-8"))

    @property
    def project(self) -> dict:
        return self.pyproject["project"]

    @property
    def dist(self) -> str:
        return canonicalize_name(self.project["name"])

    @property
    def is_module(self) -> bool:
        """A domain package: it plugs into the registry (and so owns migrations)."""
        return "tecnorev.modules" in self.project.get("entry-points", {})

    def requirements(self, *extras: str) -> list[Requirement]:
        optional = self.project.get("optional-dependencies", {})
        specs = [*self.project.get("dependencies", []), *(s for e in extras for s in optional[e])]
        return [Requirement(spec) for spec in specs]


def _is_ours(requirement: Requirement) -> bool:
    return canonicalize_name(requirement.name).startswith("tecnorev-")


def _discover() -> dict[str, Package]:
    """Every package and service with a pyproject.toml, dependencies before their dependents.

    Discovered rather than listed, so a new package (the guide's "add a package") is picked up by
    every session without editing this file.
    """
    found = [
        Package(pyproject.parent.name, pyproject.parent)
        for folder in ("packages", "services")
        for pyproject in sorted((ROOT / folder).glob("*/pyproject.toml"))
    ]
    by_dist = {package.dist: package for package in found}
    # Before each package, what it needs to run and to be tested: pip resolves an editable
    # package's extras only against the editable ones named before it.
    # A test requirement that needs the package itself (tecnorev-testing needs core) comes after
    # it: the one cycle, of the tests only.
    graph = {
        package.dist: sorted(
            name
            for name in (
                canonicalize_name(r.name) for r in package.requirements("test") if _is_ours(r)
            )
            if name not in by_dist or package.dist not in _closure(by_dist[name], by_dist)
        )
        for package in found
    }
    for dist, needs in graph.items():
        for name in needs:
            if name not in by_dist:
                raise RuntimeError(f"{dist} depends on {name}, which is not in this repository")
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    ordered: list[Package] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())  # alphabetical among the ready: the same everywhere
        ordered.extend(by_dist[d] for d in ready)
        sorter.done(*ready)
    # services last (nothing depends on them, so the order stays valid)
    ordered.sort(key=lambda package: package.path.parent.name == "services")
    return {package.short: package for package in ordered}


def _closure(package: Package, by_dist: dict[str, Package], *extras: str) -> set[str]:
    """The tecnorev distributions `package` needs at run time (itself excluded), transitively."""
    needed: set[str] = set()
    pending = [r for r in package.requirements(*extras) if _is_ours(r)]
    while pending:
        name = canonicalize_name(pending.pop().name)
        if name in needed:
            continue
        if name not in by_dist:
            raise RuntimeError(f"{package.dist} depends on {name}, which is not in this repository")
        needed.add(name)
        pending.extend(r for r in by_dist[name].requirements() if _is_ours(r))
    return needed


PACKAGES = _discover()
BY_DIST = {package.dist: package for package in PACKAGES.values()}


def _dev_requirement(name: str) -> str:
    """The version spec of a tool from the root's `dev` dependency group, so it is pinned once."""
    for spec in ROOT_PYPROJECT["dependency-groups"]["dev"]:
        if canonicalize_name(Requirement(spec).name) == name:
            return spec
    raise RuntimeError(f"{name} is not in [dependency-groups] dev of the root pyproject.toml")


DEMO_ADMIN = "admin@example.com"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _test_env() -> dict[str, str]:
    # In CI a missing PostgreSQL must fail the suite, not quietly skip its tests.
    return {"TECNOREV_REQUIRE_POSTGRES": "1"} if _in_ci() else {}


# --------------------------------------------------------------------------- installing


def _install_editable(session: nox.Session, *, extras: str = "") -> None:
    """All packages editable in one pip call, so each tecnorev dependency resolves to its folder."""
    session.install(*_editable_args(extras))


def _editable_args(extras: str = "") -> list[str]:
    # A package that another's extra requires while requiring that package itself (core[test]
    # needs tecnorev-testing, which needs core) is installed without the extra: asked with it,
    # pip finds no candidate for the requirement (reproduced with pip 23 and 24).
    cycles = {
        canonicalize_name(Requirement(text).name)
        for package in PACKAGES.values()
        for text in package.project.get("optional-dependencies", {}).get(extras, [])
        if any(
            canonicalize_name(Requirement(own).name) == package.dist
            for other in PACKAGES.values()
            if other.dist == canonicalize_name(Requirement(text).name)
            for own in other.project.get("dependencies", [])
        )
    }
    args = []
    for package in PACKAGES.values():
        has = extras in package.project.get("optional-dependencies", {})
        suffix = f"[{extras}]" if extras and has and package.dist not in cycles else ""
        args += ["-e", f"{package.path.relative_to(ROOT).as_posix()}{suffix}"]
    return args


def _install_from_wheels(session: nox.Session, *requirements: str) -> None:
    """Install from the wheelhouse only.

    --no-index turns the package index off; --isolated makes pip ignore PIP_* variables and the
    user's pip.conf, whose extra index or find-links would otherwise be consulted as well.
    """
    session.install(*PIP_OFFLINE, str(_wheelhouse(session)), *requirements)


def _installed_tecnorev(session: nox.Session) -> set[str]:
    """The tecnorev-* distributions installed in the session's venv (importlib.metadata)."""
    script = (
        "import importlib.metadata as m\n"
        "print('DISTRIBUTIONS:', *{d.metadata['Name'] or '' for d in m.distributions()})\n"
    )
    output = session.run("python", "-c", script, silent=True, log=False)
    # Output is stdout and stderr together: pick our line, whatever warnings surround it.
    line = next(line for line in output.splitlines() if line.startswith("DISTRIBUTIONS:"))
    names = {canonicalize_name(name) for name in line.split()[1:]}
    return {name for name in names if name.startswith("tecnorev-")}


# --------------------------------------------------------------------------- the wheelhouse

_wheelhouse_built = False  # build once per nox invocation, shared by every session that needs it


def _build_tools(session: nox.Session) -> Path:
    """A venv with hatch, separate from the session's, so build tooling never leaks into a venv
    whose job is to prove that a package's declared dependencies are enough."""
    python = BUILD_TOOLS / ("Scripts" if os.name == "nt" else "bin") / "python"
    if not python.exists():
        session.run(sys.executable, "-m", "venv", "--clear", str(BUILD_TOOLS), external=True)
    hatch = _dev_requirement("hatch")
    session.log(f"Installing {hatch} into {BUILD_TOOLS.relative_to(ROOT)} (output on failure)")
    session.run(str(python), "-m", "pip", "install", hatch, external=True, silent=True, log=False)
    return python.parent


def _hatch_build(session: nox.Session, hatch: str, dest: Path, *targets: str) -> None:
    options = [arg for target in targets for arg in ("-t", target)]
    for package in PACKAGES.values():
        with session.chdir(package.path):
            session.run(hatch, "build", *options, str(dest), external=True, silent=True)


def _wheelhouse(session: nox.Session) -> Path:
    """Our wheels plus every third-party wheel they and their tests need, in .nox/_wheelhouse."""
    global _wheelhouse_built
    if _wheelhouse_built:
        return WHEELHOUSE

    shutil.rmtree(WHEELHOUSE, ignore_errors=True)
    WHEELHOUSE.mkdir(parents=True)
    tools = _build_tools(session)
    session.log(f"Building the wheelhouse in {WHEELHOUSE}")
    _hatch_build(session, str(tools / "hatch"), WHEELHOUSE, "wheel")

    # Our wheels are given as files, so pip resolves every tecnorev-* requirement to them and never
    # asks the index for a tecnorev name.  The third-party requirements of the [test] extras are
    # listed by name: pip 23.2 (what `python -m venv` ships with 3.11.7) mishandles extras on a
    # wheel file and looks its name up on the index instead.
    ours = sorted(str(wheel) for wheel in WHEELHOUSE.glob("tecnorev_*.whl"))
    extras = {
        str(requirement)
        for package in PACKAGES.values()
        for requirement in package.requirements("test")
        if not _is_ours(requirement)
    }
    extras.add(_dev_requirement("pytest"))
    # The session's own interpreter downloads, so binary wheels match the venvs that install them.
    # Silent: pip's output is shown only if it fails.
    session.log("Downloading third-party wheels: the dependencies of our wheels, and pytest")
    session.run(
        "python", "-m", "pip", "download", "--only-binary=:all:",
        "-d", str(WHEELHOUSE), *ours, *sorted(extras),
        silent=True, log=False,
    )  # fmt: skip
    _wheelhouse_built = True
    return WHEELHOUSE


# --------------------------------------------------------------------------- sessions


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint rules and formatting) and mypy over every distribution's src (configuration in
    the root pyproject.toml)."""
    session.install(_dev_requirement("ruff"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # mypy reads our sources through mypy_path; it needs only the third-party packages they
    # import (with their extras': tracing, pytest), not ours: no build, no editable install.
    third_party = {
        str(requirement)
        for package in PACKAGES.values()
        for requirement in package.requirements(*package.project.get("optional-dependencies", {}))
        if not _is_ours(requirement)
    }
    session.install(
        _dev_requirement("mypy"), _dev_requirement("types-psycopg2"), *sorted(third_party)
    )
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The workspace tests (tests/) and the composed service's (services/), every package
    installed editable (config: root pyproject).  Each package's own tests run once, in its
    `package` session: alone, from its wheel.  With arguments (`dev.py test -- -k x`), pytest
    gets them instead, over every test path."""
    _install_editable(session, extras="test")
    # The workspace tests build our wheels offline (pip wheel --no-build-isolation), so the build
    # backend named in the packages' [build-system] must be importable here too.
    build_backends = {r for p in PACKAGES.values() for r in p.pyproject["build-system"]["requires"]}
    # ruff formats the revisions `tecnorev db generate` writes (its post-write hook), as in a
    # developer's environment; the tests check the written files are formatted.
    session.install(
        _dev_requirement("pytest"),
        _dev_requirement("pytest-timeout"),
        _dev_requirement("pytest-xdist"),
        _dev_requirement("pytest-cov"),
        _dev_requirement("ruff"),
        _dev_requirement("schemathesis"),
        # generates the typed client tests/test_generated_client.py walks the API with
        _dev_requirement("openapi-python-client"),
        # the package index the release round trip publishes to and installs from
        _dev_requirement("pypiserver"),
        *sorted(build_backends),
    )
    if session.posargs:
        session.run("pytest", *session.posargs, env=_test_env())
        return
    # Two at a time (most of a test is a `tecnorev` process starting, or a database waiting),
    # then the few that need the server's connections to themselves, alone.
    paths = ["tests", "services"]
    # Coverage of both runs (and of the `tecnorev` processes the tests start) in one data file,
    # what is measured is configured in the root pyproject; only the total is printed.
    COVERAGE.parent.mkdir(parents=True, exist_ok=True)
    env = {**_test_env(), "COVERAGE_FILE": str(COVERAGE)}
    cov = ["--cov", "--cov-report="]
    session.run("pytest", "-n", "2", "-m", "not exclusive", *cov, *paths, env=env)
    session.run("pytest", "-m", "exclusive", *cov, "--cov-append", *paths, env=env)
    total = session.run("coverage", "report", "--format=total", env=env, silent=True, log=False)
    session.log(
        f"coverage: {str(total).strip()}% of the lines of the tecnorev packages "
        f"(per file: COVERAGE_FILE={COVERAGE.relative_to(ROOT)} coverage report)"
    )


@nox.session
@nox.parametrize("name", list(PACKAGES))
def package(session: nox.Session, name: str) -> None:
    """One package alone: from wheels, only its declared dependencies, tested outside the repo."""
    target = PACKAGES[name]

    _install_from_wheels(session, f"{target.dist}[test]")
    session.run("python", "-m", "pip", "check")

    # Exactly the package and what it declares (transitively): an undeclared dependency it imports
    # would otherwise be hidden by a neighbour that happens to be installed.
    expected = {target.dist} | _closure(target, BY_DIST, "test")
    installed = _installed_tecnorev(session)
    if installed != expected:
        session.error(
            f"{target.dist}: installed tecnorev distributions {sorted(installed)} "
            f"differ from the declared {sorted(expected)}"
        )
    session.log(f"Installed tecnorev distributions: {', '.join(sorted(installed))}")
    if name == "migrate":
        # The engine stands alone: no Tecno Rev core, no web stack, no ORM layer above SQLAlchemy.
        absent = ["tecnorev.core", "tecnorev.auth", "fastapi", "starlette", "sqlmodel"]
        session.run("python", "-c", _ASSERT_ABSENT, *absent, log=False)

    # The tests run from a copy in an empty directory: nothing of the repository (sources, the root
    # conftest or pyproject) is importable, only what the wheels installed.
    tests_dir = target.path / "tests"
    with tempfile.TemporaryDirectory(prefix=f"tecnorev-{name}-tests-") as tmp:
        if tests_dir.is_dir():
            shutil.copytree(tests_dir, Path(tmp) / "tests")
        _write_pytest_ini(Path(tmp))
        with session.chdir(tmp):
            session.run(
                "pytest", "--import-mode=importlib", "-p", "no:cacheprovider", "--rootdir", tmp,
                *session.posargs,
                env=_test_env(),
                success_codes=[0, 5],  # 5 = no tests collected: a package may have none yet
            )  # fmt: skip

    if target.is_module:
        # The package's migration branch (and its dependencies') round-trips on its own.
        with tempfile.TemporaryDirectory(prefix=f"tecnorev-{name}-db-") as tmp, session.chdir(tmp):
            env = {"DATABASE_URL": f"sqlite:///{Path(tmp) / 'independent.db'}"}
            for command in (
                ["upgrade", "heads"],
                ["check"],
                ["heads"],
                ["downgrade", "base"],
                ["upgrade", "heads"],
            ):
                session.run("tecnorev", "db", *command, env=env)


def _write_pytest_ini(directory: Path) -> None:
    """Carry the root pytest settings (strict markers, warning filters) to a copied-out tests
    folder, minus testpaths.  Every value is written one item per line, which ini accepts."""
    lines = ["[pytest]"]
    for key, value in ROOT_PYPROJECT["tool"]["pytest"]["ini_options"].items():
        if key == "testpaths":
            continue
        items = value if isinstance(value, list) else [value]
        lines.append(f"{key} =" + "".join(f"\n    {item}" for item in items))
    (directory / "pytest.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")


@nox.session
def wheels(session: nox.Session) -> None:
    """The whole product installed from wheels (not editable) migrates SQLite and PostgreSQL."""
    _install_from_wheels(session, *(package.dist for package in PACKAGES.values()))
    session.run("python", "-m", "pip", "check")

    with tempfile.TemporaryDirectory(prefix="tecnorev-wheels-") as tmp, session.chdir(tmp):
        # From an empty directory every module must come from site-packages, not from the repo.
        session.log("Checking that every tecnorev module imports from the venv's site-packages")
        shorts = [package.short for package in PACKAGES.values()]
        session.run("python", "-c", _ASSERT_INSTALLED, *shorts, log=False)

        sqlite = {"DATABASE_URL": f"sqlite:///{Path(tmp) / 'wheels.db'}"}
        for command in (["upgrade", "heads"], ["check"], ["current"]):
            session.run("tecnorev", "db", *command, env=sqlite)

        admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
        if not _reachable(admin_url):
            if _in_ci():
                session.error(f"PostgreSQL is not reachable at {_redact(admin_url)}")
            session.warn(f"PostgreSQL not reachable at {_redact(admin_url)}: skipping that half")
            return
        database = f"tecnorev_wheels_{uuid.uuid4().hex[:12]}"
        session.log(f"Creating the throwaway PostgreSQL database {database}")
        session.run("python", "-c", _PG_ADMIN, admin_url, "create", database, log=False)
        try:
            postgres = {"DATABASE_URL": _with_database(admin_url, database)}
            for command in (["upgrade", "heads"], ["check"], ["current"]):
                session.run("tecnorev", "db", *command, env=postgres)
        finally:
            session.log(f"Dropping {database}")
            session.run("python", "-c", _PG_ADMIN, admin_url, "drop", database, log=False)


_ASSERT_INSTALLED = """\
import importlib, sys
for short in sys.argv[1:]:
    module = importlib.import_module(f"tecnorev.{short}")
    location = next(iter(module.__path__))
    assert location.startswith(sys.prefix), f"tecnorev.{short} imported from {location}"
"""

_ASSERT_ABSENT = """\
import importlib.util, sys
present = []
for name in sys.argv[1:]:
    try:
        if importlib.util.find_spec(name) is not None:
            present.append(name)
    except ModuleNotFoundError:  # its parent package is absent too
        pass
assert not present, f"installed, and should not be: {', '.join(present)}"
"""

# Run with the venv's Python: SQLAlchemy and psycopg2 are there (they are the product's own).
_PG_ADMIN = """\
import sys
import sqlalchemy as sa
url, action, database = sys.argv[1:]
statement = {
    "create": f'CREATE DATABASE "{database}"',
    "drop": f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
}[action]
engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
with engine.connect() as connection:
    connection.execute(sa.text(statement))
engine.dispose()
"""


def _with_database(url: str, database: str) -> str:
    return urllib.parse.urlsplit(url)._replace(path=f"/{database}").geturl()


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _reachable(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2).close()
    except OSError:
        return False
    return True


@nox.session
def build(session: nox.Session) -> None:
    """Wheels and sdists of every package into dist/ (what a release would upload)."""
    session.install(_dev_requirement("hatch"))
    shutil.rmtree(DIST, ignore_errors=True)
    _hatch_build(session, "hatch", DIST, "wheel", "sdist")
    for artifact in sorted(DIST.iterdir()):
        session.log(f"{artifact.relative_to(ROOT)}  ({artifact.stat().st_size:,} bytes)")


RUN_STAMP = "tecnorev-run-fingerprint.txt"  # in .nox/run: what its packages were installed from
# What a build backend needs besides itself to build an editable wheel (hatchling's
# get_requires_for_build_editable(): what pip would install into its isolated build).
EDITABLE_BUILD_NEEDS = {"hatchling.build": ["editables~=0.3"]}


@nox.session(reuse_venv=True)
def run(session: nox.Session) -> None:
    """The product on its embedded default database (DATABASE_URL from the environment or .env):
    check the settings and the port, migrate, create the demo admin (its password is printed
    once; later starts say how to set a new one), load the demo data and serve the API with its
    /docs page (tools/quickstart.py).  Arguments go to `tecnorev serve` (`-- --port 8080`);
    `-- --fresh` starts over with a new SQLite database; `-- tecnorev ARGS` runs that command in
    the environment instead.  The environment is kept, and installed again only when what
    decides its install changes (_run_fingerprint)."""
    args = list(session.posargs)
    # a command's stdout is its own (`dev.py tecnorev db sql catalog > catalog.sql`)
    _run_environment(session, sys.stderr if args[:1] == ["tecnorev"] else sys.stdout)
    if args[:1] == ["tecnorev"]:
        _hand_over(session, [_venv_script(session, "tecnorev"), *args[1:]])
        return
    quickstart = str(ROOT / "tools" / "quickstart.py")
    _hand_over(session, [_venv_script(session, "python"), quickstart, *args])


def _run_fingerprint(install_args: list[str]) -> str:
    """A hash of what decides the run environment's install: the Python, each package's
    pyproject.toml (dependencies, entry points, build system) and the pip command line.
    Sources are installed editable: a change to them needs no reinstall."""
    digest = hashlib.sha256()
    digest.update(f"{sys.implementation.name} {sys.version} {sys.executable}".encode())
    digest.update("\0".join(install_args).encode())
    for package in PACKAGES.values():
        pyproject = package.path / "pyproject.toml"
        digest.update(f"\0{pyproject.relative_to(ROOT).as_posix()}\0".encode())
        digest.update(pyproject.read_bytes())
    return digest.hexdigest()


def _run_environment(session: nox.Session, report: TextIO) -> None:
    """Every package editable in .nox/run (one pip call), only when the fingerprint changed.

    Without build isolation: pip would otherwise build each package's editable wheel in an
    isolated environment of its own, installing the build backend once per package (most of a
    first start).  The backend, at the versions the packages' [build-system] tables ask for,
    and what it needs for editable wheels are installed first: the same build, done once."""
    systems = [package.pyproject["build-system"] for package in PACKAGES.values()]
    backends = {system.get("build-backend", "") for system in systems}
    isolated = not backends <= EDITABLE_BUILD_NEEDS.keys()  # a backend we know nothing of
    build_requirements = sorted(
        {requirement for system in systems for requirement in system["requires"]}
        | {need for backend in backends for need in EDITABLE_BUILD_NEEDS.get(backend, [])}
    )
    packages = [*([] if isolated else ["--no-build-isolation"]), *_editable_args()]
    fingerprint = _run_fingerprint([*build_requirements, *packages])
    venv = Path(session.virtualenv.location)
    stamp = venv / RUN_STAMP
    where = venv.relative_to(ROOT) if venv.is_relative_to(ROOT) else venv
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == fingerprint:
        print(f"==> environment: {where} is up to date: nothing to install", file=report)
        return
    stamp.unlink(missing_ok=True)
    print(
        f"==> environment: installing every package editable into {where} (the first time, "
        "and again when a pyproject.toml changes; delete the folder to rebuild it)",
        file=report,
        flush=True,
    )
    if not isolated:
        session.install(*build_requirements)
    session.install(*packages)
    stamp.write_text(fingerprint + "\n", encoding="utf-8")


def _venv_script(session: nox.Session, name: str) -> str:
    return str(Path(session.bin) / (f"{name}.exe" if os.name == "nt" else name))


def _hand_over(session: nox.Session, command: list[str]) -> None:
    """Replace this process with `command`, in the session's environment: signals (Ctrl+C)
    reach the command itself and its exit code is the session's, with no nox in between to
    relay them or to call a stopped server a successful session.  Elsewhere than POSIX, run it."""
    if os.name != "posix":
        session.run(*command, external=True)
        return
    env = dict(os.environ)
    for name, value in session.env.items():  # VIRTUAL_ENV; None: a variable nox leaves out
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["PATH"] = os.pathsep.join([session.bin, env.get("PATH", "")])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks; figures and ratios are printed, never asserted.

    `nox -s bench` (or `-- cli --sizes 50,100,200 --online`): `tecnorev db` against plain alembic
    on the installed modules and generated trees of 50 and 200 modules x 10 revisions; a command
    whose output differs from plain alembic's fails the session.
    `nox -s bench -- api [--workers 1,2 --duration 10]`: the product list, order placement and
    every collection's listing (50-row pages, anonymous and as an admin) through `tecnorev
    serve` under 32 clients, next to the same SQL run by pgbench (the database floor) and to
    full-stack-fastapi-template's 50-item list when TECNOREV_BENCH_TEMPLATE names a checkout of
    it; needs pgbench and PostgreSQL at TEST_DATABASE_URL, and uses wrk when installed.
    `nox -s bench -- squash [--revisions 200 --postgres]`: a fresh `upgrade heads` of a module of
    200 revisions before and after `tecnorev db squash`.
    `nox -s bench -- backfill [--rows 1000000 --batch-size 1000,200 --pause 0.01]`: a batched
    backfill of a product table of 1,000,000 rows alone and under 32 clients placing orders, and
    the orders' latency during it and without; needs wrk and PostgreSQL at TEST_DATABASE_URL.
    `nox -s bench -- observability [--workers 1 --duration 10]`: the product list and order
    placement with metrics off, on, with JSON access logs and with the outbox dispatchers, next
    to the pgbench floor; and a cancellation with the outbox against one without subscribers.
    `nox -s bench -- replicas [--workers 1 --duration 10]`: the product list (16 clients) read on
    the primary and then on a streaming replica of it, each while 16 clients place orders on the
    primary, and the replica's lag; needs PostgreSQL at TEST_DATABASE_URL allowing replication
    connections from 127.0.0.1, and uses wrk when installed."""
    _install_editable(session)
    args = list(session.posargs)
    if args[:1] == ["api"]:
        if "--profile" in args:
            session.install("py-spy")
        session.run("python", "bench/bench_api.py", *args[1:])
        return
    if args[:1] == ["squash"]:
        session.run("python", "bench/bench_squash.py", *args[1:])
        return
    if args[:1] == ["backfill"]:
        session.run("python", "bench/bench_backfill.py", *args[1:])
        return
    if args[:1] == ["observability"]:
        session.run("python", "bench/bench_observability.py", *args[1:])
        return
    if args[:1] == ["replicas"]:
        session.run("python", "bench/bench_replicas.py", *args[1:])
        return
    if args[:1] == ["cli"]:
        args = args[1:]
    session.run("python", "bench/bench_cli.py", *args)


@nox.session
def deploy(session: nox.Session) -> None:
    """Deploy with deploy/deploy.py: backup, migrate once, restart replica by replica gated on
    `tecnorev db status` (`nox -s deploy -- all --restart 'systemctl restart tecnorev'`).
    Without arguments, a rehearsal: two placeholder replicas, real processes restarted, on a
    throwaway SQLite database.  `nox -s rehearsal` rehearses a real rolling deploy: two releases,
    PostgreSQL, HAProxy, load, and a naive migration that must fail."""
    _install_editable(session)
    script = str(ROOT / "deploy" / "deploy.py")
    if session.posargs:
        session.run("python", script, *session.posargs)
        return
    import shlex

    python = shlex.quote(str(Path(session.bin) / "python"))
    service = f"{python} {shlex.quote(str(ROOT / 'deploy' / 'placeholder_service.py'))}"
    with tempfile.TemporaryDirectory(prefix="tecnorev-deploy-") as tmp, session.chdir(tmp):
        replicas = []
        for number in (1, 2):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            replicas.append((f"{service} {{}} --pidfile replica{number}.pid --port {port}", port))
        for command, _port in replicas:
            session.run(*shlex.split(command.format("start")), external=True)
        arguments = ["all", "--backup-dir", "backups"]
        for command, port in replicas:
            arguments += ["--restart", command.format("restart")]
            arguments += ["--health-url", f"http://127.0.0.1:{port}/"]
        try:
            env = {"DATABASE_URL": f"sqlite:///{Path(tmp) / 'rehearsal.db'}"}
            session.run("python", script, *arguments, env=env)
        finally:
            for command, _port in replicas:
                session.run(*shlex.split(command.format("stop")), external=True)


@nox.session
def rehearsal(session: nox.Session) -> None:
    """The rolling-deploy rehearsal (deploy/rehearsal.py): today's release and the next one,
    catalog 0.1.2 (deploy/rehearsal/catalog-0.1.2: a column renamed, one retyped, one made NOT
    NULL) on one PostgreSQL database, two replicas behind HAProxy restarted one by one by
    deploy.py under constant reads and writes: 0 failed requests, 0 lost writes, no lock wait
    reaching lock_timeout.  Then the same change as one naive revision, which must fail
    requests.  Needs PostgreSQL at TEST_DATABASE_URL and haproxy."""
    admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    missing = [] if _reachable(admin_url) else [f"PostgreSQL at {_redact(admin_url)}"]
    if shutil.which("haproxy") is None and shutil.which("haproxy", path="/usr/sbin") is None:
        missing.append("haproxy (Debian package haproxy)")
    if missing:
        if _in_ci():
            session.error(f"the rehearsal needs {' and '.join(missing)}")
        session.skip(f"not available: {', '.join(missing)}")
    # Today's release: this session's venv, from our wheels like a deployment's.  No .pyc
    # written ahead (for both venvs): most of what pip would compile is never imported here.
    _install_from_wheels(session, "--no-compile", *(p.dist for p in PACKAGES.values()))
    hatch = str(_build_tools(session) / "hatch")
    script = str(ROOT / "deploy" / "rehearsal.py")
    with tempfile.TemporaryDirectory(prefix="tecnorev-rehearsal-") as tmp:
        work = Path(tmp)
        for variant in ("zero", "naive"):
            session.run("python", script, "build-variant", variant, "--hatch", hatch,
                        "--out", str(work / f"wheel-{variant}"), silent=True)  # fmt: skip
        variant_wheel = next((work / "wheel-zero").glob("*.whl"))
        naive_wheel = next((work / "wheel-naive").glob("*.whl"))
        # the next release: everything but catalog from the wheelhouse (as today's), and the
        # catalog just built (tecnorev_catalog-<version>-...whl: the venv is named for it)
        new = work / f"release-{variant_wheel.name.split('-')[1]}"
        session.run("python", "-m", "venv", str(new), silent=True)
        others = [p.dist for p in PACKAGES.values() if p.short != "catalog"]
        session.run(
            str(new / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile",
            *PIP_OFFLINE, str(_wheelhouse(session)), str(variant_wheel), *others,
            external=True, silent=True,
        )  # fmt: skip
        session.run(
            "python",
            script,
            "run",
            "--new-venv",
            str(new),
            "--naive-wheel",
            str(naive_wheel),
            "--work",
            str(work),
            "--admin-url",
            admin_url,
        )  # fmt: skip  (no posargs: `dev.py test -- -k x` gives them to pytest)
