"""Real virtual environments holding our wheels: deployments as users build them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_wheels(out: Path) -> dict[str, Path]:
    """A wheel of every package, built offline with the installed build backend."""
    for folder in sorted((REPO / "packages").iterdir()):
        if (folder / "pyproject.toml").is_file():
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                 "-w", str(out), str(folder)],
                check=True, timeout=300,
            )  # fmt: skip
    return {p.name.split("-")[0].removeprefix("tecnorev_"): p for p in out.glob("*.whl")}


def make_venv(root: Path, *requirements: str | Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    # Our distributions are given as files, so no tecnorev-* name is looked up on an index.
    pip(root, "install", "-q", *map(str, requirements))
    return root


def pip(venv: Path, *args: str) -> None:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def run_in(
    venv: Path,
    command: str,
    *args: str,
    url: str,
    cwd: Path,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one of the venv's console scripts with DATABASE_URL (and ``env``) set and nothing
    else leaking in."""
    env = {**os.environ, **(env or {}), "DATABASE_URL": url}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(venv / "bin" / command), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
