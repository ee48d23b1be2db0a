"""``tecnorev db release <module> <version>``: the record of which revisions a version ships,
written where the wheel carries it, checked by ``verify``, the same bytes on every run."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

from packaging.version import Version

from tecnorev.testing.core import module_heads, run_tecnorev

from .test_db_verify import CATALOG_HEAD, REPO, Scratch

RECORDED = {"auth", "catalog", "inventory", "sales", "logistics", "payments"}


def test_every_module_records_its_releases_and_its_wheel_carries_them(wheels):
    import zipfile

    heads = module_heads()
    for module in RECORDED:
        path = REPO / f"packages/{module}/src/tecnorev/{module}/migrations/releases.toml"
        releases = tomllib.loads(path.read_text(encoding="utf-8"))["release"]
        assert "0.1.0" in releases
        newest = releases[max(releases, key=Version)]
        # the version being built is the newest recorded, and it ships today's head
        assert max(releases, key=Version) == version(f"tecnorev-{module}")
        assert newest["heads"] == [heads[module]]
        assert newest["requires"]["tecnorev-core"] == "<0.2,>=0.1.0"
        with zipfile.ZipFile(wheels[module]) as wheel:
            assert f"tecnorev/{module}/migrations/releases.toml" in wheel.namelist()


def test_a_recorded_release_is_never_rewritten(tmp_path):
    recorded = version("tecnorev-sales")
    again = run_tecnorev("db", "release", "sales", recorded, cwd=tmp_path)
    assert again.returncode == 1
    assert f"sales {recorded} is already recorded in " in again.stderr
    assert "a release must be newer" in again.stderr
    older = run_tecnorev("db", "release", "sales", "0.0.9", cwd=tmp_path)
    assert older.returncode == 1
    bad = run_tecnorev("db", "release", "sales", "next", cwd=tmp_path)
    assert bad.returncode == 2
    assert "'next' is not a version (PEP 440)" in bad.stderr
    missing = run_tecnorev("db", "release", "loyalty", "0.1.0", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no installed module named 'loyalty'" in missing.stderr


def _scratch_with_record(tmp_path) -> Scratch:
    """Catalog at 0.1.0, released with its head of today."""
    scratch = Scratch(tmp_path)
    code, output = scratch.run(
        "db", "release", "catalog", "0.1.0", url=f"sqlite:///{tmp_path}/r.db"
    )
    assert code == 0, output
    return scratch


def test_a_revision_after_a_release_needs_a_new_version_and_record(tmp_path):
    scratch = _scratch_with_record(tmp_path)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    scratch.add_revision("catalog", "catalog_0123456789ab", CATALOG_HEAD, None)

    code, checks = scratch.verify(url)
    assert code == 1
    (problem,) = checks["releases"]["problems"]
    assert problem["module"] == "catalog"
    assert problem["message"] == (
        f"tecnorev-catalog 0.1.0 is recorded as shipping {CATALOG_HEAD}, but the branch's head "
        "is now catalog_0123456789ab: a released version never changes; raise the version in "
        "pyproject.toml, and record it at release time with tecnorev db release catalog "
        "<version>"
    )

    code, output = scratch.run("db", "release", "catalog", "0.1.1", url=url)
    assert code == 0, output
    record = scratch.root("catalog") / "migrations/releases.toml"
    assert f"recorded catalog 0.1.1: ships catalog_0123456789ab ({record})" in output
    assert 'set version = "0.1.1" in its pyproject.toml before building' in output
    releases = tomllib.loads(record.read_text())["release"]
    assert list(releases) == ["0.1.0", "0.1.1"]
    assert releases["0.1.0"]["heads"] == [CATALOG_HEAD]  # history kept as it was
    assert releases["0.1.1"]["heads"] == ["catalog_0123456789ab"]

    # the version is raised, as the command said: the record and the code agree
    scratch.distribution("tecnorev-catalog", "0.1.1", "tecnorev-auth<0.2,>=0.1.0")
    code, checks = scratch.verify(url)
    assert checks["releases"]["status"] == "ok", checks["releases"]


def test_the_record_is_the_same_bytes_on_every_run(tmp_path):
    written = []
    for seed in ("0", "1", "77"):
        scratch = _scratch_with_record(tmp_path / seed)
        scratch.add_revision("catalog", "catalog_0123456789ab", CATALOG_HEAD, None)
        env = {**scratch.env, "PYTHONHASHSEED": seed}
        result = run_tecnorev("db", "release", "catalog", "0.2.0", env=env, cwd=tmp_path / seed)
        assert result.returncode == 0, result.stderr
        written.append((scratch.root("catalog") / "migrations/releases.toml").read_bytes())
    assert written[0] == written[1] == written[2]
