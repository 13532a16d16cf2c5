"""oracle.repro_c: C reproducers compile -Wall -Werror and, on the system libbpf, say the truth."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from oracle import Oracle
from oracle.ops import (
    Answer,
    AttachTypeByName,
    Callback,
    Fault,
    HandleRef,
    HandlerOpts,
    Op,
    ProgTypeByName,
    Register,
    Unregister,
)
from oracle.repro_c import c_string, comment_text, emit_c
from oracle.traces import LibbpfInfo, Record, Trace, TraceHeader, records_of
from tests.divergence_cases import CASES

SYSTEM = TraceHeader(LibbpfInfo("1.1.2", "system"), origin="hand",
                     created="2025-01-02T03:04:05+00:00")
LIBBPF_H = Path("/usr/include/bpf/libbpf.h")


def trace_of(ops: list[Op], answers: list[Answer] | None = None) -> Trace:
    return Trace(SYSTEM, tuple(records_of(ops, answers)))


# ---------------------------------------------------------------------------
# without a compiler


def test_c_string_escapes() -> None:
    assert c_string(None) == "NULL"
    assert c_string(b"abc/x") == '"abc/x"'
    assert c_string(b'"\\') == r'"\"\\"'
    assert c_string(b"\x01" + b"1") == r'"\0011"'  # octal: never swallows the next digit
    assert c_string(b"??=?") == r'"?\?=?"'  # no trigraph
    assert c_string(b"\xff\n") == r'"\377\012"'


def test_comment_text_cannot_close_or_open_a_comment() -> None:
    assert "*/" not in comment_text("a */ b /* c ??/")
    assert "/*" not in comment_text("/x/*/y")
    assert "??" not in comment_text("??/")


def test_standard_opts_use_libbpf_opts_and_others_a_raw_buffer() -> None:
    ops: list[Op] = [
        Register(b"a", 1, 0, HandlerOpts(cookie=5, prog_setup_fn=Callback(-1))),
        Register(b"b", 1, 0, HandlerOpts(sz=48, tail=b"\0" * 7 + b"\1")),
    ]
    source = emit_c(trace_of(ops), title="t", summary="s")
    assert "LIBBPF_OPTS(libbpf_prog_handler_opts, opts0," in source
    assert ".prog_setup_fn = setup_ret_m1" in source
    assert "static int setup_ret_m1(struct bpf_program *prog, long cookie)" in source
    assert "PUT(opts1.raw, 0, (size_t)48);" in source
    assert 'memcpy(opts1.raw + 40, "\\000\\000\\000\\000\\000\\000\\000\\001", 8);' in source


def test_only_what_is_used_is_declared() -> None:
    source = emit_c(trace_of([Register(b"a", 1, 0)]), title="t", summary="s")
    for unused in ("prog_type;", "attach_type;", "expect_rc", "expect_out", "PUT(", "int h0"):
        assert unused not in source
    assert "No answers were recorded" in source


def test_handle_refs_become_variables() -> None:
    ops: list[Op] = [Register(b"a", 1, 0), Register(b"b", 1, 0), Unregister(HandleRef(1))]
    source = emit_c(trace_of(ops, [Answer(1), Answer(2), Answer(0)]), title="t", summary="s")
    assert "int h1;" in source
    assert "h1 = EXPECT_RC(1, 2, libbpf_register_prog_handler(" in source
    assert "EXPECT_RC(2, 0, libbpf_unregister_prog_handler(h1));" in source


def test_header_names_the_build_and_how_to_run() -> None:
    header = TraceHeader(LibbpfInfo("1.7.0", "asan", "ab" * 32, "/c/libbpf.so.1"), seed=3)
    source = emit_c(Trace(header, ()), title="KB1: sec[-1] read", summary="a */ summary")
    assert source.startswith("/*\n * KB1: sec[-1] read\n")
    assert "libbpf 1.7.0 (asan build), sha256 " + "ab" * 32 in source.replace("\n * ", " ")
    assert "cc -Wall -o repro repro.c -lbpf" in source
    assert "LD_PRELOAD=$(clang -print-file-name=libclang_rt.asan-x86_64.so)" in source


# ---------------------------------------------------------------------------
# compiled and run against the system libbpf


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where ``cc -Wall -Werror x.c -lbpf`` works; skip with the reason if not."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc): apt-get install gcc")
    if not LIBBPF_H.exists():
        pytest.skip(f"no libbpf headers ({LIBBPF_H}): apt-get install libbpf-dev")
    directory = tmp_path_factory.mktemp("repro")
    probe = directory / "probe.c"
    probe.write_text("#include <bpf/libbpf.h>\n"
                     "int main(void) { return !libbpf_major_version(); }\n")
    done = subprocess.run(["cc", "-o", str(directory / "probe"), str(probe), "-lbpf"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot link -lbpf: {done.stderr.strip().splitlines()[-1:]}")
    return directory


def compile_and_run(directory: Path, source: str, name: str,
                    compiler: str = "cc") -> subprocess.CompletedProcess[str]:
    c_file = directory / f"{name}.c"
    c_file.write_text(source)
    binary = directory / name
    done = subprocess.run([compiler, "-Wall", "-Werror", "-o", str(binary), str(c_file), "-lbpf"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return subprocess.run([str(binary)], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.libbpf
@pytest.mark.parametrize(("case_id", "ops", "answers"), CASES, ids=[c[0] for c in CASES])
def test_divergence_case_holds_on_system_libbpf(
    build: Path, case_id: str, ops: list[Op], answers: list[Answer]
) -> None:
    assert Oracle("1.1.2").run(ops) == answers
    source = emit_c(trace_of(ops, answers), title=f"{case_id}", summary="docs/divergences.md")
    run = compile_and_run(build, source, case_id)
    assert run.returncode == 0, run.stdout
    assert "FAIL" not in run.stdout
    assert run.stdout.splitlines()[-1].startswith("PASS: ")


@pytest.mark.libbpf
def test_wrong_expected_answer_fails_with_expected_vs_actual(build: Path) -> None:
    ops: list[Op] = [Register(b"abc", 2, 0), ProgTypeByName(b"abc/x"), AttachTypeByName(b"xdp")]
    wrong = [Answer(1), Answer(0, (2, 0)), Answer(0, (37,))]  # op 1 really is -ESRCH
    run = compile_and_run(build, emit_c(trace_of(ops, wrong), title="t", summary="s"), "wrong")
    assert run.returncode == 1
    lines = run.stdout.splitlines()
    call = 'libbpf_prog_type_by_name("abc/x", &prog_type, &attach_type)'
    assert f"FAIL op 1 {call}: rc expected 0, got -ESRCH (-3)" in lines
    assert f"FAIL op 1 {call}: prog_type expected 2, got untouched" in lines
    assert 'ok   op 2 libbpf_attach_type_by_name("xdp", &attach_type): attach_type 37' in lines
    assert lines[-1] == "FAIL: 3 of 6 facts hold"


@pytest.mark.libbpf
def test_arbitrary_bytes_reach_libbpf_unchanged(build: Path) -> None:
    every = bytes(range(1, 256))
    odd = b'"??=\\x01?'
    ops: list[Op] = [Register(every, 4, 5), Register(odd + b"+", 6, 7),
                     ProgTypeByName(every), ProgTypeByName(odd + b"/z"),
                     ProgTypeByName(every[:-1]), Unregister(HandleRef(0)), Unregister(-(2**31))]
    answers = Oracle("1.1.2").run(ops)
    assert answers[2] == Answer(0, (4, 5)) and answers[3] == Answer(0, (6, 7))
    run = compile_and_run(build, emit_c(trace_of(ops, answers), title="t", summary="s"), "bytes")
    assert run.returncode == 0, run.stdout


@pytest.mark.libbpf
def test_odd_opts_and_callbacks_reproduce_exactly(build: Path) -> None:
    ops: list[Op] = [
        Register(b"a", 1, 0, HandlerOpts(sz=2**63 + 40, cookie=-(2**63), tail=b"\xff" * 3,
                                         prog_attach_fn=Callback(-(2**31)))),
        Register(b"b", 1, 0, HandlerOpts(sz=16, cookie=-1, prog_setup_fn=Callback(3))),
        Register(b"c", 1, 0, HandlerOpts(sz=41, tail=b"\1")),
        Register(b"d", 1, 0, HandlerOpts(cookie=2**63 - 1, prog_prepare_load_fn=Callback(0))),
    ]
    answers = Oracle("1.1.2").run(ops)
    assert answers[2] == Answer(-22)
    run = compile_and_run(build, emit_c(trace_of(ops, answers), title="t", summary="s"), "opts")
    assert run.returncode == 0, run.stdout


@pytest.mark.libbpf
def test_crash_repro_only_makes_the_calls(build: Path) -> None:
    ops: list[Op] = [Register(b"a", 1, 0), ProgTypeByName(b"socket"), Fault("null_out")]
    source = emit_c(trace_of(ops), title="crash", summary="NULL out-parameters")
    run = compile_and_run(build, source, "crash")
    assert run.returncode < 0  # killed by a signal inside libbpf
    assert run.stdout == ""


@pytest.mark.libbpf
def test_clang_accepts_it_too(build: Path) -> None:
    if shutil.which("clang") is None:
        pytest.skip("no clang")
    ops = [*CASES[-1][1], ProgTypeByName(b"a"), AttachTypeByName(b"a")]
    answers = Oracle("1.1.2").run(ops)
    run = compile_and_run(build, emit_c(trace_of(ops, answers), title="t", summary="s"),
                          "clang", compiler="clang")
    assert run.returncode == 0, run.stdout


def test_records_without_answers_mix_with_checked_ones() -> None:
    records = (Record(ProgTypeByName(b"a")), Record(ProgTypeByName(b"b"), Answer(-3, (None, None))))
    source = emit_c(Trace(SYSTEM, records), title="t", summary="s")
    assert '\tlibbpf_prog_type_by_name("a", &prog_type, &attach_type);' in source
    assert 'EXPECT_RC(1, -ESRCH, libbpf_prog_type_by_name("b"' in source
