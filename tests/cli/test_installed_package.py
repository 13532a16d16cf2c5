"""``pytest --libbpf`` from an installed package, without this repository.

A wheel of the project is built into a temporary directory and installed
(``--no-deps``) into a fresh venv; its dependencies come from the venv running
the tests (a ``.pth`` line, so no network), never from this checkout.  From a
temporary working directory, ``pytest --pyargs oracle.conformance --libbpf
system`` must find the ``--libbpf`` option (the ``pytest11`` entry point), the
packaged corpus (package data) and pass; the repository's own tests collected
by that venv (entry point and tests/conftest.py's ``pytest_plugins`` both
present) must not register the option twice.  Skipped, with the reason, when
no venv or wheel can be made here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = [pytest.mark.libbpf, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def sh(*argv: str | Path, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv with this project's wheel installed."""
    tmp = tmp_path_factory.mktemp("installed")
    built = sh(sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", tmp / "wheel",
               cwd=tmp)
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1:]}")
    made = sh(sys.executable, "-m", "venv", "--system-site-packages", tmp / "venv", cwd=tmp)
    if made.returncode != 0:
        pytest.skip(f"cannot create a venv here: {made.stderr.strip().splitlines()[-1:]}")
    python = tmp / "venv" / "bin" / "python"
    purelib = sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                 cwd=tmp).stdout.strip()
    # the test venv's dependencies (pytest, cffi, ...): a path, not a site dir, so the
    # editable install of this checkout there (a .pth finder) is not activated
    Path(purelib, "zz-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = (tmp / "wheel").glob("*.whl")
    done = sh(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp)
    assert done.returncode == 0, done.stderr
    return python


def test_installed_package_runs_its_conformance_tests(installed: Path, tmp_path: Path) -> None:
    where = sh(installed, "-c", "import oracle, oracle.shipped as s; print(oracle.__file__);"
               " print(s.CORPUS)", cwd=tmp_path).stdout.split()
    assert where and not where[0].startswith(str(ROOT)), where   # the installed copy
    assert Path(where[1], "known-findings.json").is_file()
    run = sh(installed, "-m", "pytest", "--pyargs", "oracle.conformance", "--libbpf", "system",
             "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout, run.stdout[-2000:]


def test_installed_plugin_and_the_repository_conftest_register_libbpf_once(
        installed: Path) -> None:
    run = sh(installed, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
             "tests/differential/test_conformance.py", "--libbpf", "x", "--libbpf", "y", cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "test_corpus_replays_live[x]" in run.stdout
    assert "test_corpus_replays_live[y]" in run.stdout
