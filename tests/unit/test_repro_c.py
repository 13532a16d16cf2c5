"""oracle.repro_c: C reproducers compile -Wall -Werror and, on the system libbpf, say the truth."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from oracle import Oracle
from oracle.bpfelf import ObjectSpec, Program, build_object
from oracle.campaign.lifecycle_gen import LifecycleGenerator
from oracle.ccompile import LIBBPF_H
from oracle.ops import (
    NO_BPF,
    NO_OBJECT,
    NO_PROGRAM,
    Answer,
    Attach,
    AttachTypeByName,
    Callback,
    Close,
    Fault,
    HandleRef,
    HandlerOpts,
    LifecycleOp,
    Load,
    ObjRef,
    Op,
    Open,
    ProgInfo,
    ProgTypeByName,
    Register,
    SetAutoload,
    SetType,
    Unregister,
)
from oracle.repro_c import c_string, comment_text, emit_c
from oracle.traces import LibbpfInfo, Record, Trace, TraceHeader, records_of
from tests.divergence_cases import CASES, expected
from tests.lifecycle.test_custom_sec_handlers import scenario

SYSTEM = TraceHeader(LibbpfInfo("1.1.2", "system"), origin="hand",
                     created="2025-01-02T03:04:05+00:00")


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
    return subprocess.run([str(binary)], capture_output=True, text=True, errors="replace",
                          timeout=60, check=False)


def needs_bpf(ops: list[Op]) -> None:
    """Skip, with the reason, when ``ops`` load or attach and this process may not."""
    if not any(isinstance(op, Load | Attach) for op in ops):
        return
    if os.geteuid() != 0:
        pytest.skip("needs root: bpf_object__load / bpf_program__attach call bpf()")
    from oracle.libbpf.lifecycle import bpf_permitted

    if not bpf_permitted():
        pytest.skip("bpf() is not permitted here (seccomp, container or sysctl)")


@pytest.mark.libbpf
@pytest.mark.parametrize(("case_id", "ops", "answers"), CASES, ids=[c[0] for c in CASES])
def test_divergence_case_holds_on_system_libbpf(
    build: Path, case_id: str, ops: list[Op], answers: list[Answer]
) -> None:
    oracle = Oracle("1.1.2")
    assert oracle.run(ops) == expected(case_id, answers, oracle.release)
    needs_bpf(ops)
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
    call = 'libbpf_prog_type_by_name("abc/x", &prog_type, &expected_attach_type)'
    assert f"FAIL op 1 {call}: rc expected 0, got -ESRCH (-3)" in lines
    assert f"FAIL op 1 {call}: prog_type expected 2, got untouched" in lines
    assert f"FAIL op 1 {call}: expected_attach_type expected 0, got untouched" in lines
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
    d12 = next(ops for case_id, ops, _ in CASES if case_id == "D12")
    ops = [*d12, ProgTypeByName(b"a"), AttachTypeByName(b"a")]
    answers = Oracle("1.1.2").run(ops)
    run = compile_and_run(build, emit_c(trace_of(ops, answers), title="t", summary="s"),
                          "clang", compiler="clang")
    assert run.returncode == 0, run.stdout
    ops = scenario(load=False)
    source = emit_c(trace_of(ops, Oracle("1.1.2").run(ops)), title="t", summary="s")
    run = compile_and_run(build, source, "clang_lifecycle", compiler="clang")
    assert run.returncode == 0, run.stdout


def test_records_without_answers_mix_with_checked_ones() -> None:
    records = (Record(ProgTypeByName(b"a")), Record(ProgTypeByName(b"b"), Answer(-3, (None, None))))
    source = emit_c(Trace(SYSTEM, records), title="t", summary="s")
    assert '\tlibbpf_prog_type_by_name("a", &prog_type, &expected_attach_type);' in source
    assert 'EXPECT_RC(1, -ESRCH, libbpf_prog_type_by_name("b"' in source


# ---------------------------------------------------------------------------
# object lifecycle ops

ONE = ObjectSpec((Program(b"socket", b"f"),))
OBJ = ObjRef(0)


def scenario_trace(*, load: bool = True) -> Trace:
    """libbpf's selftest custom_sec_handlers (tests/lifecycle), with the 1.1.2 model's answers."""
    ops = scenario(load=load)
    return trace_of(ops, Oracle("1.1.2").run(ops))


def test_lifecycle_shape() -> None:
    source = emit_c(scenario_trace(), title="custom_sec_handlers", summary="s")
    opened = scenario(load=True)[5]
    assert isinstance(opened, Open) and isinstance(opened.obj, ObjectSpec)
    elf = build_object(opened.obj)
    assert "static const unsigned char obj0_elf[] = {\n\t0x7f, 0x45, 0x4c, 0x46," in source
    assert f"/* obj0_elf: {len(elf)} bytes, the object oracle.bpfelf builds" in source
    assert "run it as\n * root" in source  # Load and Attach need bpf()
    for line in [
        "struct bpf_object *obj0;",
        "struct bpf_program *prog;",
        ".prog_setup_fn = setup_h0,",
        'return called("prog_attach_fn", 4, prog, cookie, 0);',
        "EXPECT_RC(5, 0, open_object(&obj0, obj0_elf, sizeof(obj0_elf)));",
        'expect_out(5, "programs", count_programs(obj0), 6);',
        "expect_calls(5, 4, (const struct call[]){",
        '{ "prog_setup_fn", 1, "abc2", "abc/whatever", 2L, 0 },',
        "prog = prog_at(8, obj0, 2);",
        'EXPECT_STR(8, "name", "custom1", bpf_program__name(prog));',
        'EXPECT_U32(8, "prog_type", 5, bpf_program__type(prog));',
        "EXPECT_RC(12, 0, bpf_program__set_autoload(prog_at(12, obj0, 0), false));",
        "EXPECT_RC(13, 0, bpf_program__set_type(prog_at(13, obj0, 5), 1));",
        "EXPECT_RC(14, 0, bpf_object__load(obj0));",
        "EXPECT_RC(15, -EOPNOTSUPP, attach_program(prog_at(15, obj0, 0)));",
        "expect_calls(15, 0, NULL);",
        "bpf_object__close(obj0);",
        "EXPECT_RC(22, 0, libbpf_unregister_prog_handler(h4));",
    ]:
        assert f"\t{line}\n" in source, line
    assert "setup_ret_" not in source  # recording callbacks, one per registration


def test_harness_conventions_become_comments() -> None:
    ops: list[Op] = [Open(ONE), Open(b""), ProgInfo(OBJ, 1), SetType(OBJ, -1, 1),
                     SetAutoload(ObjRef(1), 0, True), Load(OBJ), Attach(OBJ, 0), Close(OBJ),
                     Close(OBJ), Attach(OBJ, 0)]
    answers = [Answer(0, (1,)), Answer(-errno.EINVAL, (None,)), Answer(NO_PROGRAM, (None,) * 5),
               Answer(NO_PROGRAM), Answer(NO_OBJECT), Answer(NO_BPF), Answer(NO_BPF), Answer(0),
               Answer(NO_OBJECT), Answer(NO_BPF)]
    assert Oracle("1.1.2", bpf=False).run(ops) == answers
    source = emit_c(trace_of(ops, answers), title="t", summary="s")
    comments = [line.strip() for line in source.splitlines() if line.startswith("\t/* op")]
    assert comments == [
        "/* op 2: obj0 has no program 1 (it has 1): the harness answers -ENOENT without"
        " calling libbpf */",
        "/* op 3: obj0 has no program -1 (it has 1): the harness answers -ENOENT without"
        " calling libbpf */",
        "/* op 4: obj1 is not open (its open (op 1) failed): the harness answers -EBADF without"
        " calling libbpf */",
        "/* op 5: bpf() was not permitted when this was recorded: the harness answers -ENOSYS"
        " without calling libbpf */",
        "/* op 6: bpf() was not permitted when this was recorded: the harness answers -ENOSYS"
        " without calling libbpf */",
        "/* op 8: obj0 is not open (closed by op 7): the harness answers -EBADF without calling"
        " libbpf */",
        "/* op 9: bpf() was not permitted when this was recorded: the harness answers -ENOSYS"
        " without calling libbpf */",
    ]
    assert "static const unsigned char obj1_elf[1];" in source  # an empty object: size 0
    assert "open_object(&obj1, obj1_elf, 0)" in source
    assert "run it as" not in source  # no load or attach is made
    for unused in ("attach_program", "prog_at", "struct call", "EXPECT_STR"):
        assert unused not in source


def test_raw_bytes_and_objects_opened_twice_share_one_array() -> None:
    raw = build_object(ONE)[:-8]
    ops: list[Op] = [Open(raw), Open(ONE), Open(ONE)]
    source = emit_c(trace_of(ops), title="t", summary="s")
    assert f"/* obj0_elf: {len(raw)} bytes, the recorded raw bytes */" in source
    assert "open_object(&obj2, obj1_elf, sizeof(obj1_elf));" in source
    assert "obj2_elf" not in source


# -- compiled and run ----------------------------------------------------------


@pytest.mark.libbpf
def test_custom_sec_handlers_reproducer_passes_as_root(build: Path) -> None:
    trace = scenario_trace()
    needs_bpf(list(trace.ops))
    run = compile_and_run(build, emit_c(trace, title="custom_sec_handlers", summary="s"),
                          "custom_sec_handlers")
    assert run.returncode == 0, run.stdout
    assert "FAIL" not in run.stdout
    assert run.stdout.splitlines()[-1] == "PASS: 68 of 68 facts hold"


@pytest.mark.libbpf
def test_custom_sec_handlers_without_load_passes_unprivileged_too(build: Path) -> None:
    run = compile_and_run(build, emit_c(scenario_trace(load=False), title="t", summary="s"),
                          "open_only")
    assert run.returncode == 0, run.stdout
    assert run.stdout.splitlines()[-1] == "PASS: 46 of 46 facts hold"


@pytest.mark.libbpf
def test_wrong_lifecycle_expectations_fail_with_expected_vs_actual(build: Path) -> None:
    trace = scenario_trace()
    needs_bpf(list(trace.ops))
    records = list(trace.records)

    def change(index: int, **fields: Any) -> None:
        answer = records[index].answer
        assert answer is not None
        records[index] = Record(records[index].op, dataclasses.replace(answer, **fields))

    opened = records[5].answer
    info = records[8].answer
    assert opened is not None and info is not None
    change(5, calls=(opened.calls[0], dataclasses.replace(opened.calls[1], cookie=99),
                     *opened.calls[2:]))
    change(8, out=(b"custom9", info.out[1], 6, *info.out[3:]))
    change(15, rc=0)
    run = compile_and_run(build, emit_c(Trace(trace.header, tuple(records)), title="t",
                                        summary="s"), "wrong_lifecycle")
    assert run.returncode == 1
    lines = run.stdout.splitlines()
    open_call = "open_object(&obj0, obj0_elf, sizeof(obj0_elf))"
    assert (f'FAIL op 5 {open_call}: call 1 expected prog_setup_fn of h1 on abc2'
            ' (SEC "abc/whatever") cookie 99 returned 0, got prog_setup_fn of h1 on abc2'
            ' (SEC "abc/whatever") cookie 2 returned 0') in lines
    assert f"ok   op 5 {open_call}: call 2 prog_setup_fn of h3 on kprobe1 (SEC \"kprobe\")" \
        " cookie 5 returned 0" in lines
    assert 'FAIL op 8 bpf_program__name(prog): name expected "custom9", got "custom1"' in lines
    assert "FAIL op 8 bpf_program__type(prog): prog_type expected 6, got 5" in lines
    assert ("FAIL op 15 attach_program(prog_at(15, obj0, 0)): rc expected 0,"
            " got -EOPNOTSUPP (-95)") in lines
    assert lines[-1] == "FAIL: 64 of 68 facts hold"


@pytest.mark.libbpf
def test_a_program_missing_at_run_time_stops_with_a_failed_fact(build: Path) -> None:
    ops: list[Op] = [Open(ONE), ProgInfo(OBJ, 1), Close(OBJ)]
    answers = [Answer(0, (2,)), Answer(0, (b"g", b"socket", 1, 0, 1)), Answer(0)]  # really 1
    run = compile_and_run(build, emit_c(trace_of(ops, answers), title="t", summary="s"),
                          "missing")
    assert run.returncode == 1
    lines = run.stdout.splitlines()
    assert "FAIL op 0 open_object(&obj0, obj0_elf, sizeof(obj0_elf)): programs expected 2," \
        " got 1" in lines
    assert lines[-2:] == ["FAIL op 1: the object has no program 1: stopping",
                          "FAIL: 1 of 3 facts hold"]


@pytest.mark.libbpf
def test_conventions_and_raw_objects_reproduce(build: Path) -> None:
    raw = build_object(ONE)
    ops: list[Op] = [Register(b"socket", 1, 0, HandlerOpts(cookie=3, prog_setup_fn=Callback(0))),
                     Open(raw), Open(b""), ProgInfo(OBJ, 0), ProgInfo(OBJ, 1),
                     SetAutoload(ObjRef(1), 0, True), SetType(OBJ, 0, 2**32 - 1), Close(OBJ),
                     Close(OBJ), ProgInfo(OBJ, 0), Open(ONE), Close(ObjRef(2))]
    answers = Oracle("1.1.2").run(ops)
    assert answers[1].calls and answers[3].out[:2] == (b"f", b"socket")
    assert answers[4].rc == NO_PROGRAM and answers[5].rc == answers[8].rc == NO_OBJECT
    run = compile_and_run(build, emit_c(trace_of(ops, answers), title="t", summary="s"), "raw")
    assert run.returncode == 0, run.stdout


@pytest.mark.libbpf
def test_lifecycle_crash_reproducer_only_makes_the_calls(build: Path) -> None:
    ops = scenario(load=False)
    source = emit_c(trace_of(ops), title="crash", summary="no answers")
    assert "EXPECT" not in source and "expect_calls" not in source
    assert "static int setup_ret_0(struct bpf_program *prog, long cookie)" in source
    run = compile_and_run(build, source, "lifecycle_crash")
    assert run.returncode == 0 and run.stdout == ""


@pytest.mark.libbpf
def test_records_without_answers_mix_with_checked_lifecycle_ones(build: Path) -> None:
    records = list(scenario_trace(load=False).records)
    records[5] = Record(records[5].op)  # the open: not checked, its callback calls forgotten
    source = emit_c(Trace(SYSTEM, tuple(records)), title="t", summary="s")
    assert "\topen_object(&obj0, obj0_elf, sizeof(obj0_elf));\n\tforget_calls();\n" in source
    run = compile_and_run(build, source, "mixed_lifecycle")
    assert run.returncode == 0, run.stdout


@pytest.mark.libbpf
@pytest.mark.parametrize("seed", range(12))
def test_generated_lifecycle_sequences_reproduce(build: Path, seed: int) -> None:
    """lifecycle_gen sequences with the 1.1.2 model's answers hold on the system libbpf."""
    ops = LifecycleGenerator(seed).sequence()
    needs_bpf(ops)
    assert any(isinstance(op, LifecycleOp) for op in ops)
    source = emit_c(trace_of(ops, Oracle("1.1.2").run(ops)), title=f"seed {seed}", summary="s")
    run = compile_and_run(build, source, f"gen{seed}")
    assert run.returncode == 0, run.stdout
