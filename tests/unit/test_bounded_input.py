"""Bounded input: ``replay`` of a pathological trace costs bounded memory, stack and time.

Each fault is one ERROR line naming the file, the line and the limit, exit
status 2, and the traces around it are still replayed and reported.
"""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from oracle.cli import main
from oracle.ops import Answer, ProgTypeByName
from oracle.traces import (
    LibbpfInfo,
    TraceHeader,
    TraceReader,
    dump_line,
    encode_header,
    records_of,
    write_trace,
)
from oracle.traces.records import MAX_DEPTH, MAX_LINE_BYTES, MAX_OBJECT_BYTES

HEADER = TraceHeader(LibbpfInfo("1.7.0"), origin="test")


def good(directory: Path, name: str) -> Path:
    return write_trace(directory / name, HEADER,
                       records_of([ProgTypeByName(b"xdp")], [Answer(0, (6, 37))]))


def with_line(directory: Path, line: str | bytes, name: str = "bad.jsonl") -> Path:
    path = directory / name
    data = line if isinstance(line, bytes) else line.encode()
    path.write_bytes(dump_line(encode_header(HEADER)).encode() + data)
    return path


def replay_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, list[str]]:
    code = main(["replay", *map(str, argv)])
    out = capsys.readouterr().out
    return code, out.splitlines()


def assert_between_good(capsys: pytest.CaptureFixture[str], tmp_path: Path, bad: Path | str,
                        *fragments: str, flags: tuple[str, ...] = ()) -> str:
    """``replay first bad last``: exit 2, one ERROR line for bad, both good traces PASS."""
    first, last = good(tmp_path, "first.jsonl"), good(tmp_path, "last.jsonl")
    code, lines = replay_cli(capsys, *flags, first, bad, last)
    assert code == 2
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"PASS {first}") and lines[2].startswith(f"PASS {last}")
    assert lines[1].startswith(f"ERROR {bad}: ")
    for fragment in fragments:
        assert fragment in lines[1]
    return lines[1]


def test_deep_nesting_is_refused_not_a_recursion_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = with_line(tmp_path, "[" * 100_000 + "]" * 100_000 + "\n")
    assert_between_good(capsys, tmp_path, bad, "line 2", f"limit of {MAX_DEPTH}", "MAX_DEPTH")


def test_nesting_just_past_the_limit_is_refused(tmp_path: Path) -> None:
    """Deeper than MAX_DEPTH, though well within what the JSON decoder would take."""
    deep: object = "xdp"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    bad = with_line(tmp_path, json.dumps({"op": "prog_type_by_name", "args": {"name": deep}})
                    + "\n")
    with TraceReader(bad) as reader, pytest.raises(Exception, match="MAX_DEPTH"):
        list(reader)


def test_long_line_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    name = "a" * MAX_LINE_BYTES
    bad = with_line(tmp_path, json.dumps({"op": "prog_type_by_name", "args": {"name": name}})
                    + "\n")
    assert_between_good(capsys, tmp_path, bad, "line 2", f"limit of {MAX_LINE_BYTES} bytes")


def test_big_object_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    obj = {"hex": "7f454c46" + "00" * (MAX_OBJECT_BYTES - 3)}
    bad = with_line(tmp_path, json.dumps({"op": "open", "args": {"obj": obj}, "handle": "obj0"})
                    + "\n")
    assert_between_good(capsys, tmp_path, bad, "line 2", f"limit of {MAX_OBJECT_BYTES}",
                        "MAX_OBJECT_BYTES")


def test_hex_costs_memory_in_proportion(tmp_path: Path) -> None:
    """A line of hex near the limit decodes in a few times its size (was ~60x: 10 MB, 600 MB)."""
    obj = {"hex": "7f454c46" + "00" * (MAX_OBJECT_BYTES - 4)}
    path = with_line(tmp_path, json.dumps({"op": "open", "args": {"obj": obj},
                                           "handle": "obj0"}) + "\n")
    tracemalloc.start()
    try:
        with TraceReader(path) as reader:
            (record,) = list(reader)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert record.op.obj[:4] == b"\x7fELF"  # type: ignore[attr-defined]
    assert peak < 8 * 2 * MAX_OBJECT_BYTES, peak


def test_dev_zero_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_between_good(capsys, tmp_path, "/dev/zero", "a character device", "--allow-special")


def test_dev_zero_when_allowed_stops_at_the_line_limit(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Reads MAX_LINE_BYTES + 1 bytes, then gives up (it grew to 7.9 GB in 25 s)."""
    assert_between_good(capsys, tmp_path, "/dev/zero", "line 1", f"limit of {MAX_LINE_BYTES}",
                        flags=("--allow-special",))


def test_fifo_without_writer_is_refused_not_waited_for(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_between_good(capsys, tmp_path, fifo, "a FIFO", "not a regular file",
                        "--allow-special")


def test_fifo_when_allowed_is_read(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = good(tmp_path, "source.jsonl").read_bytes()

    def feed() -> None:
        with open(fifo, "wb") as writer:
            writer.write(data)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    code, lines = replay_cli(capsys, "--allow-special", fifo)
    feeder.join(10)
    assert code == 0 and lines[0].startswith(f"PASS {fifo}"), lines


def test_directory_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    assert_between_good(capsys, tmp_path, directory, "a directory")
