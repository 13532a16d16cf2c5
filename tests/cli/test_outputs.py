"""Safe outputs and bad paths in the environment: one line on stderr, exit 2, nothing left behind.

``check --report/--junit`` refuse a path that is not a regular file before the
campaign starts (nothing runs: no findings directory appears); written files
get the user's umask; ``record --out`` and ``$SEC_ORACLE_CACHE`` that cannot be
written, and a full disk while recording, are one line each.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from oracle.ops import Answer, ProgTypeByName
from oracle.outputs import atomic_write
from oracle.traces import LibbpfInfo, TraceHeader, records_of, write_trace
from tests.cli.test_bad_input import assert_one_line_error, run
from tests.mounts import small_tmpfs
from tests.targets import target_or_skip


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    if kind == "chardev":  # a /dev/null of our own: never the real one
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        (tmp_path / "real.json").write_text("{}\n")
        path.symlink_to("real.json")
    else:
        path.mkdir()
    return path


KIND_WORDS = {"chardev": "a character device", "fifo": "a FIFO", "symlink": "a symlink",
              "dir": "a directory"}


@pytest.mark.parametrize("option", ["--report", "--junit"])
@pytest.mark.parametrize("kind", sorted(KIND_WORDS))
def test_check_refuses_a_special_output_before_the_campaign(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, kind: str) -> None:
    path = special(tmp_path, kind)
    before = os.lstat(path)
    names = listing(tmp_path)
    code, err = run(capsys, "check", "--libbpf", "/no/such/libbpf.so", "--cases", "1",
                    "--findings", str(tmp_path / "findings"), option, str(path))
    # refused for the path, not for the (bad) target: the path is checked first
    assert_one_line_error(code, err, str(path), KIND_WORDS[kind], "not a regular file")
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert listing(tmp_path) == names  # no findings directory, no temp file


def test_check_refuses_one_file_for_report_and_junit(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    code, err = run(capsys, "check", "--libbpf", "/no/such/libbpf.so", "--findings",
                    str(tmp_path / "findings"), "--report", str(tmp_path / "out.json"),
                    "--junit", str(tmp_path / "sub" / ".." / "out.json"))
    assert_one_line_error(code, err, "--report and --junit name the same file")
    assert listing(tmp_path) == ["sub"]


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_outputs_get_the_umask_not_0600(tmp_path: Path, umask_022: None) -> None:
    report = tmp_path / "r.json"
    atomic_write(report, "{}\n")
    trace = write_trace(tmp_path / "t.jsonl", TraceHeader(LibbpfInfo("1.7.0")),
                        records_of([ProgTypeByName(b"xdp")], [Answer(0, (6, 37))]))
    assert stat.S_IMODE(report.stat().st_mode) == 0o644
    assert stat.S_IMODE(trace.stat().st_mode) == 0o644
    assert listing(tmp_path) == ["r.json", "t.jsonl"]


def test_record_out_under_a_regular_file(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x\n")
    out = tmp_path / "file" / "corpus"
    code, err = run(capsys, "record", "--libbpf", "/no/such/libbpf.so", "--out", str(out))
    assert_one_line_error(code, err, str(out), "Not a directory")
    assert listing(tmp_path) == ["file"]


@pytest.mark.parametrize("where", ["file", "proc"])
def test_cache_that_cannot_be_made(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    (tmp_path / "file").write_text("x\n")
    cache = tmp_path / "file" / "cache" if where == "file" else Path("/proc/sec-oracle-cache")
    monkeypatch.setenv("SEC_ORACLE_CACHE", str(cache))
    code, err = run(capsys, "libbpf", "build", "1.7.0")
    assert_one_line_error(code, err, "cannot create cache directory", "SEC_ORACLE_CACHE")
    assert listing(tmp_path) == ["file"] and not cache.exists()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small", "256k") as mount:
        yield mount


@pytest.mark.libbpf
def test_record_on_a_full_disk(capsys: pytest.CaptureFixture[str], full_disk: Path) -> None:
    target_or_skip("1.7.0")
    out = full_disk / "corpus"
    code, err = run(capsys, "record", "--libbpf", "1.7.0", "--out", str(out), "--cases", "3000",
                    "--select", "all")
    assert_one_line_error(code, err, "cannot write trace", "No space left on device",
                          "traces saved before it stay")
    saved = listing(out)
    assert saved and all(name.endswith(".jsonl") for name in saved)  # no temp file left
