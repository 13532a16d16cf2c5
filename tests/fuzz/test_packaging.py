"""Packaging for the engines: .clusterfuzzlite/build.sh run outside Docker, then one
packaged fuzzer run on its seed corpus; and where a harness finds its libbpf.

The build (a module fixture) costs ~55-75 s on 2 cores (libbpf with ASan ~20 s,
PyInstaller ~35-50 s), the runs ~3 s and ~6 s (-fork=1); those tests are marked
``slow`` and skipped, with the reason, when clang, make, zip, PyInstaller, atheris
or libbpf 1.7.0's source tree is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fuzz import harness_registry

ROOT = Path(__file__).resolve().parents[2]
BUILD_SH = ROOT / ".clusterfuzzlite" / "build.sh"
FUZZER = "harness_registry"
#: what OSS-Fuzz's base-builder exports for SANITIZER=address (plus what its
#: `compile` appends for Python projects)
OSS_FUZZ_ADDRESS = {
    "CC": "clang",
    "CXX": "clang++",
    "CFLAGS": "-O1 -fno-omit-frame-pointer -gline-tables-only -fsanitize=address "
              "-fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link "
              "-fno-sanitize=function,leak,vptr,",
    "CXXFLAGS": "-O1 -fno-omit-frame-pointer -gline-tables-only -fsanitize=address "
                "-fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link",
    "LIB_FUZZING_ENGINE": "-fsanitize=fuzzer",
    "SANITIZER": "address",
    "FUZZING_LANGUAGE": "python",
    "FUZZING_ENGINE": "libfuzzer",
}


def _missing() -> str | None:
    for tool in ("clang", "make", "zip", "ldd"):
        if shutil.which(tool) is None:
            return f"{tool} not found (scripts/setup installs it)"
    for module, extra in (("PyInstaller", "package"), ("atheris", "fuzz")):
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed: pip install -e '.[{extra}]'"
    return None


def _libbpf_source() -> Path:
    from oracle.errors import LibbpfError
    from oracle.libbpf import debsrc

    try:
        return debsrc.source_tree("1.7.0")
    except LibbpfError as exc:
        pytest.skip(f"no libbpf 1.7.0 source tree: {exc}")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$OUT of build.sh, run the way OSS-Fuzz runs it but without Docker."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("cfl")
    src, out, work = base / "src", base / "out", base / "work"
    src.mkdir()
    (src / "libbpf-sec-oracle").symlink_to(ROOT)
    (src / "libbpf").symlink_to(_libbpf_source())
    env = {**os.environ, **OSS_FUZZ_ADDRESS, "SRC": str(src), "OUT": str(out),
           "WORK": str(work), "PYTHON": sys.executable}
    env.pop("LD_PRELOAD", None)
    result = subprocess.run(["bash", "-eu", str(BUILD_SH)], env=env, cwd=base,
                            capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_build_sh_writes_the_oss_fuzz_layout(out: Path) -> None:
    wrapper = out / FUZZER
    assert os.access(wrapper, os.X_OK)
    assert "LLVMFuzzerTestOneInput" in wrapper.read_text()  # how fuzzers are detected
    assert not os.access(out / f"{FUZZER}.pkg", os.X_OK)  # only the wrapper is a fuzzer
    seeds = sorted(p.name for p in (ROOT / "corpus" / "fuzz" / "registry").iterdir())
    with zipfile.ZipFile(out / f"{FUZZER}_seed_corpus.zip") as archive:
        assert sorted(archive.namelist()) == seeds
    assert (out / f"{FUZZER}.dict").read_bytes() == \
        (ROOT / "corpus" / "fuzz" / "registry.dict").read_bytes()
    for name in ("libbpf.so.1.7.0", "libelf.so.1", "sanitizer_with_fuzzer.so"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_packaged_fuzzer_runs_its_seed_corpus(out: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    with zipfile.ZipFile(out / f"{FUZZER}_seed_corpus.zip") as archive:
        archive.extractall(corpus)
    empty_cache = tmp_path / "cache"  # the harness must not need this tool's cache
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "PYTHONPATH", harness_registry.LIBBPF_ENV)}
    env["SEC_ORACLE_CACHE"] = str(empty_cache)
    result = subprocess.run([str(out / FUZZER), f"-dict={out / f'{FUZZER}.dict'}", "-runs=3000",
                             "-max_total_time=20", str(corpus)],
                            env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "INITED cov:" in log and "Done 3000 runs" in log, log[-4000:]
    # the libbpf in $OUT is the instrumented one: libFuzzer reads its counters
    assert "inline 8-bit counters" in log, log[:2000]
    assert not empty_cache.exists()


def test_packaged_harness_finds_libbpf_next_to_itself(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "libbpf.so.1.7.0").write_bytes(b"")
    (tmp_path / "harness_registry.pkg").write_bytes(b"")
    monkeypatch.delenv(harness_registry.LIBBPF_ENV, raising=False)
    monkeypatch.setattr(harness_registry, "FROZEN", True)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "harness_registry.pkg"))
    assert harness_registry.located_libbpf() == str(tmp_path / "libbpf.so.1.7.0")
    monkeypatch.setenv(harness_registry.LIBBPF_ENV, "1.7.0+fuzz")
    assert harness_registry.located_libbpf() == "1.7.0+fuzz"


def test_unpackaged_harness_needs_a_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(harness_registry.LIBBPF_ENV, raising=False)
    monkeypatch.setattr(harness_registry, "FROZEN", False)
    assert harness_registry.located_libbpf() is None
    with pytest.raises(SystemExit, match="no libbpf"):
        harness_registry.main(["--replay"])


def test_frozen_sanitizer_target_without_preload_is_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    with pytest.raises(SystemExit, match="run the wrapper script"):
        harness_registry.check_frozen_preload("fuzz")
    harness_registry.check_frozen_preload("plain")


@pytest.mark.slow
def test_packaged_fuzzer_relaunches_itself_for_fork(out: Path, tmp_path: Path) -> None:
    """-fork runs the package again (argv[0]); the preload is inherited from the wrapper."""
    corpus = tmp_path / "corpus"
    with zipfile.ZipFile(out / f"{FUZZER}_seed_corpus.zip") as archive:
        archive.extractall(corpus)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONPATH")}
    result = subprocess.run([str(out / FUZZER), "-fork=1", "-max_total_time=4", str(corpus)],
                            env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "job: 1" in log and "ERROR" not in log, log[-4000:]
