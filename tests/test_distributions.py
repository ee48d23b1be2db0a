"""What every distribution carries besides its code: the licence (a copy of the root's, since a
wheel or sdist can only ship files inside its own folder), py.typed, classifiers and URLs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = sorted(
    p.parent for p in REPO.glob("*/*/pyproject.toml") if p.parts[-3] in ("packages", "services")
)


@pytest.mark.parametrize("root", DISTRIBUTIONS, ids=lambda p: p.name)
def test_licence_typing_marker_classifiers_and_urls(root):
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (root / "LICENSE").read_text() == (REPO / "LICENSE").read_text()
    (package,) = (root / "src" / "tecnorev").iterdir()
    assert (package / "py.typed").is_file()
    classifiers = project["classifiers"]
    assert "Typing :: Typed" in classifiers
    assert {
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    } <= set(classifiers)
    # License-Expression says it; PEP 639 deprecates licence classifiers beside it
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert set(project["urls"]) == {"Homepage", "Documentation", "Source", "Issues"}
    assert project["urls"]["Source"].endswith(root.relative_to(REPO).as_posix())


def test_mypy_reads_every_distribution_from_its_src():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    assert sorted(config["mypy_path"]) == sorted(
        f"$MYPY_CONFIG_FILE_DIR/{root.relative_to(REPO).as_posix()}/src" for root in DISTRIBUTIONS
    )


def test_coverage_measures_every_distribution():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["coverage"]["run"]
    packages = {
        f"tecnorev.{next((root / 'src' / 'tecnorev').iterdir()).name}" for root in DISTRIBUTIONS
    }
    assert set(config["source_pkgs"]) == packages
