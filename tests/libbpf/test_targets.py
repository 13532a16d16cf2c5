"""``--libbpf TARGET``: parsing, resolving, probing, cached builds and their CLI.

Tests marked ``libbpf`` build real libbpf releases into the cache
(``$SEC_ORACLE_CACHE`` if set): 10-30 s each on first run, instant afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oracle.cli import main
from oracle.errors import LibbpfError, UnknownVersionError
from oracle.libbpf import build as builder
from oracle.libbpf import debsrc
from oracle.libbpf.targets import (
    LibbpfInfo,
    Target,
    detect_variant,
    parse_target,
    probe,
    require_table,
    resolve,
    select_table,
    system_libbpf,
)

LIBZ = Path("/lib/x86_64-linux-gnu/libz.so.1")
KNOWN = ("1.1.2", "1.4.6", "1.5.0", "1.7.0")


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


def dynamic_symbols(path: Path) -> set[str]:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(path, "rb") as handle:
        table = ELFFile(handle).get_section_by_name(".dynsym")
        assert isinstance(table, SymbolTableSection)
        return {symbol.name for symbol in table.iter_symbols()}


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEC_ORACLE_CACHE", str(cache))
    return cache


# -- parse_target ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("system", ("system", None, "plain", None)),
        ("1.7.0", ("release", "1.7.0", "plain", None)),
        ("1.1.2+asan", ("release", "1.1.2", "asan", None)),
        ("1.5.0+fuzz", ("release", "1.5.0", "fuzz", None)),
        (" 1.4.6 ", ("release", "1.4.6", "plain", None)),
    ],
)
def test_parse_good(spec: str, expected: tuple[object, ...]) -> None:
    assert parse_target(spec) == expected


def test_parse_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    so = tmp_path / "libbpf.so.1"
    so.write_bytes(b"")
    assert parse_target(str(so)) == ("path", None, "plain", so)
    monkeypatch.chdir(tmp_path)
    assert parse_target("./libbpf.so.1") == ("path", None, "plain", so)
    assert parse_target("libbpf.so.1") == ("path", None, "plain", so)


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("", "empty libbpf target"),
        ("bogus", "bad libbpf target 'bogus'"),
        ("1.6.0", "unknown libbpf version '1.6.0': known releases are 1.1.2, 1.4.6, 1.5.0, 1.7.0"),
        ("1.7", "unknown libbpf version '1.7'"),
        ("v1.7.0", "bad libbpf target"),
        ("1.7.0+tsan", "unknown variant +tsan"),
        ("1.7.0+", "unknown variant +"),
        ("1.7.0+asan+fuzz", "bad libbpf target"),
        ("system+asan", "system libbpf comes as built"),
        ("/nonexistent/libbpf.so.1", "no such file /nonexistent/libbpf.so.1"),
        ("/tmp", "is not a libbpf source tree"),
    ],
)
def test_parse_bad(spec: str, complaint: str) -> None:
    with pytest.raises(LibbpfError) as exc:
        parse_target(spec)
    assert complaint in one_line(exc)


def test_unknown_version_names_every_release() -> None:
    with pytest.raises(LibbpfError) as exc:
        resolve("1.6.0")
    message = one_line(exc)
    assert all(version in message for version in debsrc.RELEASES)


# -- table selection -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("major", "minor", "release", "table"),
    [
        (1, 7, "1.7.0", "1.7.0"),
        (1, 7, None, "1.7.0"),
        (1, 1, "1.1.0", "1.1.2"),  # same major.minor: that table
        (1, 6, None, None),
        (2, 0, None, None),
    ],
)
def test_select_table(major: int, minor: int, release: str | None, table: str | None) -> None:
    assert select_table(major, minor, release, KNOWN) == table


def test_require_table_names_nearest() -> None:
    assert require_table(LibbpfInfo("v1.7", 1, 7, "1.7.0")) == "1.7.0"
    with pytest.raises(UnknownVersionError) as exc:
        require_table(LibbpfInfo("v1.6", 1, 6, None))
    assert "nearest known is" in one_line(exc)


# -- system and foreign libraries -------------------------------------------------------


def test_system_target_probes_to_its_table() -> None:
    try:
        system_libbpf()
    except LibbpfError as exc:
        pytest.skip(f"no system libbpf: {exc}")
    target = resolve("system")
    assert (target.kind, target.variant, target.env()) == ("system", "plain", {})
    info = probe(target)
    if info.release != "1.1.2":
        pytest.skip(f"system libbpf is {info.release or info.version_string}, not bookworm's 1.1.2")
    assert (info.version_string, info.major, info.minor) == ("v1.1", 1, 1)
    assert info.table_version == "1.1.2"


def test_non_libbpf_is_refused() -> None:
    if not LIBZ.exists():
        pytest.skip(f"{LIBZ} not present")
    target = resolve(str(LIBZ))
    assert target.variant == "plain"
    with pytest.raises(LibbpfError) as exc:
        probe(target)
    assert f"{LIBZ} is not a libbpf" in one_line(exc)


def test_non_elf_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "libbpf.so.1"
    fake.write_text("not an ELF file\n")
    with pytest.raises(LibbpfError) as exc:
        resolve(str(fake))
    assert "is not a libbpf" in one_line(exc)


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LibbpfError) as exc:
        resolve(str(tmp_path / "nope" / "libbpf.so.1"))
    assert "no such file" in one_line(exc)


def test_unbuilt_release_without_build(empty_cache: Path) -> None:
    with pytest.raises(LibbpfError) as exc:
        resolve("1.4.6+asan", build=False)
    assert "sec-oracle libbpf build 1.4.6+asan" in one_line(exc)


# -- CLI -----------------------------------------------------------------------


def test_cli_build_bogus_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["libbpf", "build", "bogus"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("sec-oracle: error: bad libbpf target 'bogus'")


def test_cli_list_empty_cache(empty_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["libbpf", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["target"] for row in rows] == ["system"]


# -- build failures --------------------------------------------------------------------


def test_make_failure_keeps_log(empty_cache: Path) -> None:
    if shutil.which("make") is None or shutil.which(builder.CC) is None:
        pytest.skip("make or clang not installed")
    fake = empty_cache / "src" / "1.7.0" / "src"
    fake.mkdir(parents=True)
    (fake / "libbpf.c").write_text("")
    (fake / "Makefile").write_text("%:\n\t@echo 'libbpf.c:1:1: error: boom'; false\n")
    with pytest.raises(LibbpfError) as exc:
        builder.build("1.7.0", "plain")
    message = one_line(exc)
    log = empty_cache / "build" / "1.7.0-plain.failed.log"
    assert "libbpf.c:1:1: error: boom" in message
    assert f"full log: {log}" in message
    assert "error: boom" in log.read_text()
    assert not builder.build_dir("1.7.0", "plain").exists()
    assert not [p for p in (empty_cache / "build").iterdir() if p.name.startswith(".1.7.0-plain-")]


# -- real builds -----------------------------------------------------------------------


@pytest.mark.libbpf
def test_build_plain_1_7_0() -> None:
    target = resolve("1.7.0")
    assert (target.kind, target.version, target.variant) == ("release", "1.7.0", "plain")
    assert target.path == builder.build_dir("1.7.0", "plain") / "libbpf.so.1"
    assert target.env() == {}
    assert detect_variant(target.path) == "plain"
    info = probe(target)
    assert (info.major, info.minor, info.table_version) == (1, 7, "1.7.0")
    recorded = builder.build_info(target.path.parent)
    assert recorded["version"] == "1.7.0" and recorded["variant"] == "plain"
    assert recorded["sha256"] == hashlib.sha256(target.path.read_bytes()).hexdigest()
    assert resolve("1.7.0") == target  # cached: same path, no rebuild


@pytest.mark.libbpf
def test_build_asan_1_7_0() -> None:
    target = resolve("1.7.0+asan")
    assert target.variant == "asan"
    assert "__asan_init" in dynamic_symbols(target.path)
    assert detect_variant(target.path) == "asan"
    env = target.env()
    assert Path(env["LD_PRELOAD"]).is_file()
    assert "detect_leaks=0" in env["ASAN_OPTIONS"]
    assert "halt_on_error=1" in env["UBSAN_OPTIONS"]
    info = probe(target)
    assert (info.major, info.minor, info.table_version) == (1, 7, "1.7.0")
    # The same file given by path is recognised as instrumented.
    assert resolve(str(target.path)).variant == "asan"


@pytest.mark.libbpf
def test_asan_build_needs_its_runtime() -> None:
    target = resolve("1.7.0+asan")
    bare = Target("bare", "path", None, "plain", target.path)  # env() without LD_PRELOAD
    with pytest.raises(LibbpfError) as exc:
        probe(bare)
    assert "undefined symbol: __asan" in one_line(exc)


def test_atheris_env_uses_asan_with_fuzzer(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    target = Target("x", "path", None, "fuzz", tmp_path / "libbpf.so.1")
    preload = Path(target.env("atheris")["LD_PRELOAD"])
    assert preload.name == "asan_with_fuzzer.so" and preload.is_file()


@pytest.mark.libbpf
def test_concurrent_builds_agree(tmp_path: Path) -> None:
    source = debsrc.source_tree("1.7.0")  # already downloaded: reuse it
    cache = tmp_path / "cache"
    (cache / "src").mkdir(parents=True)
    (cache / "src" / "1.7.0").symlink_to(source)
    code = "from oracle.libbpf.build import build; print(build('1.7.0', 'plain'))"
    env = {**os.environ, "SEC_ORACLE_CACHE": str(cache)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in results]
    paths = {out.decode().strip() for out, _ in results}
    expected = cache / "build" / "1.7.0-plain" / "libbpf.so.1"
    assert paths == {str(expected)}
    assert expected.is_file()
    leftovers = [p.name for p in (cache / "build").iterdir() if p.name.startswith(".1.7.0-plain-")]
    assert leftovers == []
