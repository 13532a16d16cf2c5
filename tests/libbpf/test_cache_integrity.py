"""Cache integrity: a cached .so that no longer matches its build.json is rebuilt or refused.

Each test works on a private cache (``$SEC_ORACLE_CACHE`` in tmp) holding a
copy of the shared cache's 1.7.0 build (and its source, for the real rebuild):
the shared cache is only read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from oracle.cache import cache_dir
from oracle.errors import LibbpfError
from oracle.libbpf import build as builder
from oracle.libbpf.targets import resolve
from tests.cli.test_bad_input import run
from tests.targets import target_or_skip

pytestmark = pytest.mark.libbpf


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of our own with a copy of the shared 1.7.0 plain build in it."""
    shared = target_or_skip("1.7.0").path.parent
    cache = tmp_path / "cache"
    shutil.copytree(shared, cache / "build" / shared.name, symlinks=True)
    monkeypatch.setenv("SEC_ORACLE_CACHE", str(cache))
    assert cache_dir() == cache
    return cache / "build" / shared.name


def truncate(build: Path) -> Path:
    real = build / json.loads((build / "build.json").read_text())["so"]
    data = real.read_bytes()
    real.write_bytes(data[: len(data) // 2])
    return real


def test_intact_copy_is_used_as_is(private_cache: Path) -> None:
    assert builder.damage(private_cache) is None
    assert resolve("1.7.0", build=False).path == private_cache / "libbpf.so.1"


def test_truncated_so_is_refused_without_building(private_cache: Path) -> None:
    real = truncate(private_cache)
    size = real.stat().st_size
    names = sorted(p.name for p in private_cache.parent.iterdir())
    with pytest.raises(LibbpfError) as caught:
        resolve("1.7.0", build=False)
    message = str(caught.value)
    assert "does not match the sha256 in build.json" in message
    assert "sec-oracle libbpf build --force 1.7.0" in message
    assert real.stat().st_size == size  # left as it was: nothing built, nothing added
    assert sorted(p.name for p in private_cache.parent.iterdir()) == names


def test_list_shows_the_damage(private_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truncate(private_cache)
    from oracle.cli import main

    assert main(["libbpf", "list", "--json"]) == 0
    rows = {r["target"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert "--force 1.7.0" in rows["1.7.0"]["error"]


def test_force_rebuilds_even_an_intact_build(private_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(builder, "preflight", lambda: None)
    monkeypatch.setattr(builder.debsrc, "source_tree", lambda version: Path("/src"))
    monkeypatch.setattr(builder, "publish", lambda *a, **k: calls.append(a))
    code, err = run(capsys, "libbpf", "build", "1.7.0")
    assert (code, err, calls) == (0, "", [])  # intact: used as is
    code, err = run(capsys, "libbpf", "build", "--force", "1.7.0")
    assert (code, err) == (0, "") and [c[3] for c in calls] == ["1.7.0-plain"]


def test_truncated_so_is_rebuilt_automatically(private_cache: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The real thing: ``libbpf build 1.7.0`` rebuilds a damaged copy (was: rc 0, nothing done,
    and the next check failed with 'loading ... failed (exit -7): no output')."""
    shared_src = Path.home() / ".cache" / "libbpf-sec-oracle" / "src" / "1.7.0"
    if not (shared_src / "src" / "libbpf.c").exists():
        pytest.skip("no cached libbpf 1.7.0 source to rebuild from (would download it)")
    shutil.copytree(shared_src, cache_dir() / "src" / "1.7.0", symlinks=True)
    real = truncate(private_cache)
    code, err = run(capsys, "libbpf", "build", "1.7.0")
    assert code == 0, err
    assert builder.damage(private_cache) is None
    assert real.stat().st_size > 0 and resolve("1.7.0", build=False).path.exists()
    leftovers = [p.name for p in private_cache.parent.iterdir() if p.name.startswith(".")
                 and not p.name.endswith(".lock")]
    assert leftovers == []  # no staging directory left behind
