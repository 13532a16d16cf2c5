"""oracle.selftest_c: findings as libbpf prog_tests selftests that compile, pass and fail.

The compiled tests build each selftest against a stand-in ``test_progs.h``
(``STAND_IN``, written for these tests: the ASSERT macros the selftests use,
with the semantics of libbpf's) plus a driver ``main`` that does what
test_progs does for one test, and run it on the system libbpf.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from oracle import Oracle
from oracle.campaign.compare import Divergence
from oracle.campaign.findings import Finding, slug, write_finding
from oracle.campaign.lifecycle_gen import LifecycleGenerator
from oracle.campaign.runner import CaseOutcome
from oracle.libbpf.results import OpResult
from oracle.ops import (
    Answer,
    AttachTypeByName,
    Callback,
    Close,
    Fault,
    HandleRef,
    HandlerOpts,
    ObjRef,
    Op,
    Open,
    ProgInfo,
    ProgTypeByName,
    Register,
    Unregister,
)
from oracle.repro_c import emit_c
from oracle.selftest_c import LITERAL_IDS, emit_selftest, selftest_name
from oracle.traces import LibbpfInfo, Record, Trace
from tests.divergence_cases import CASES
from tests.lifecycle.test_custom_sec_handlers import scenario
from tests.unit.test_repro_c import (
    ONE,
    SYSTEM,
    build,  # noqa: F401  (the fixture: a directory where cc ... -lbpf works)
    compile_and_run,
    needs_bpf,
    scenario_trace,
    trace_of,
)

REGISTRY_OPS: list[Op] = [
    Register(b"abc", 2, 0), ProgTypeByName(b"abc/x"), AttachTypeByName(b"xdp"),
    Register(b"x", 1, 0, HandlerOpts(cookie=3, prog_setup_fn=Callback(-1))),
    Unregister(HandleRef(0)), Unregister(2), Unregister(-5), Unregister(LITERAL_IDS + 1),
]


def registry_trace() -> Trace:
    return trace_of(REGISTRY_OPS, Oracle("1.1.2").run(REGISTRY_OPS))


def body_of(source: str, name: str = "t") -> list[str]:
    """The lines of ``void test_<name>(void)``'s body."""
    start = source.index(f"\nvoid test_{name}(void)\n{{\n")
    body = source[start:].split("\n{\n", 1)[1]
    assert body.endswith("\n}\n")
    return body[:-3].split("\n")


def messages(lines: list[str]) -> list[str]:
    """The named facts of the ASSERTs in ``lines``, in order."""
    return [m.group(1) for line in lines if (m := re.search(r'ASSERT_\w+\(.*, "([^"]*)"\)', line))]


# ---------------------------------------------------------------------------
# the source's shape


def test_registry_selftest_shape() -> None:
    source = emit_selftest(registry_trace(), name="t", title="a title", summary="a summary")
    assert source.startswith("// SPDX-License-Identifier: GPL-2.0\n/*\n * a title\n")
    assert "prog_tests/t.c and run\n *   ./test_progs -t t\n" in source
    assert re.findall(r"^#include .*$", source, re.M) == ["#include <test_progs.h>"]
    assert "main(" not in source and not re.search(r"\bprintf\(", source)
    assert "test__start_subtest" not in source  # one scenario: no step runs alone
    body = body_of(source)
    for line in [
        "int id_base, h0 = 0, h1 = 0, err;",
        'if (!ASSERT_GT(id_base, 0, "handler id probe"))',
        "h0 = libbpf_register_prog_handler(\"abc\", 2, 0, NULL);",
        'ASSERT_EQ(h0, id_base + 1, "op0 register rc");',
        "prog_type = UNTOUCHED;",
        "enum bpf_prog_type prog_type;\n\tenum bpf_attach_type expected_attach_type;\n"
        "\tenum bpf_attach_type attach_type;",
        'err = libbpf_prog_type_by_name("abc/x", &prog_type, &expected_attach_type);',
        'ASSERT_EQ(err, -ESRCH, "op1 prog_type_by_name rc");',
        'ASSERT_EQ(prog_type, UNTOUCHED, "op1 prog_type_by_name prog_type");',
        'ASSERT_EQ(attach_type, 37, "op2 attach_type_by_name attach_type");',
        ".prog_setup_fn = setup_ret_m1);",
        'ASSERT_EQ(h1, id_base + 2, "op3 register rc");',
        "err = libbpf_unregister_prog_handler(h0);",
        'ASSERT_OK(err, "op4 unregister rc");',
        "err = libbpf_unregister_prog_handler(id_base + 2);",  # a literal id: relative
        "err = libbpf_unregister_prog_handler(-5);",  # no handler in any process: as is
        f"err = libbpf_unregister_prog_handler({LITERAL_IDS + 1});",
        "if (h1 > 0)",
        "\tlibbpf_unregister_prog_handler(h1);",
    ]:
        assert f"\t{line}\n" in "\n".join(body) + "\n", line
    assert messages(body) == [
        "handler id probe", "handler id probe unregister", "op0 register rc",
        "op1 prog_type_by_name rc", "op1 prog_type_by_name prog_type",
        "op1 prog_type_by_name expected_attach_type", "op2 attach_type_by_name rc",
        "op2 attach_type_by_name attach_type", "op3 register rc", "op4 unregister rc",
        "op5 unregister rc", "op6 unregister rc", "op7 unregister rc"]
    assert "cleanup:" not in body  # no goto: nothing can stop the test early


def facts_in_repro(source: str) -> int:
    return len(re.findall(r"\b(?:EXPECT_RC|expect_out|EXPECT_STR|EXPECT_U32|expect_calls)\(",
                          source.split("\nint main(void)\n", 1)[1]))


@pytest.mark.parametrize("trace", [registry_trace(), scenario_trace()], ids=["registry", "life"])
def test_one_assert_per_fact_repro_c_checks(trace: Trace) -> None:
    body = body_of(emit_selftest(trace, name="t", title="t", summary="s"))
    checks = [line for line in body if re.match(r"\t+(?:ASSERT_|check_calls\()", line)
              and "handler id probe" not in line and "ASSERT_TRUE(prog" not in line]
    assert len(checks) == facts_in_repro(emit_c(trace, title="t", summary="s"))


def test_lifecycle_selftest_shape() -> None:
    source = emit_selftest(scenario_trace(), name="life", title="t", summary="s")
    assert "static const unsigned char obj0_elf[] = {\n\t0x7f, 0x45, 0x4c, 0x46," in source
    assert "static int check_calls(" not in source and "static void check_calls(" in source
    assert 'return called("prog_attach_fn", 4, prog, cookie, 0);' in source
    assert "needs the privileges test_progs runs with" in source.replace("\n * ", " ")
    for unused in ("expect_rc", "expect_out", "EXPECT_", "prog_at(", "exit(", "facts"):
        assert unused not in source, unused
    body = body_of(source, "life")
    for line in [
        "struct bpf_object *obj0 = NULL;",
        "err = open_object(&obj0, obj0_elf, sizeof(obj0_elf));",
        'ASSERT_OK(err, "op5 open rc");',
        'ASSERT_EQ(count_programs(obj0), 6, "op5 open programs");',
        'check_calls("op5 open", 4, (const struct call[]){',
        '\t{ "prog_setup_fn", 1, "abc2", "abc/whatever", 2L, 0 },',
        "prog = prog_or_null(obj0, 2);",
        'if (!ASSERT_TRUE(prog, "op8 prog_info obj0 has program 2"))',
        "\tgoto cleanup;",
        'ASSERT_STREQ(bpf_program__name(prog), "custom1", "op8 prog_info name");',
        'ASSERT_EQ(bpf_program__type(prog), 5, "op8 prog_info prog_type");',
        'ASSERT_EQ(bpf_program__autoload(prog), 1, "op8 prog_info autoload");',
        "err = bpf_program__set_autoload(prog, false);",
        'ASSERT_OK(err, "op14 load rc");',
        'ASSERT_EQ(err, -EOPNOTSUPP, "op15 attach rc");',
        'check_calls("op15 attach", 0, NULL);',
        "bpf_object__close(obj0);\n\tobj0 = NULL;",
        'ASSERT_OK(err, "op22 unregister rc");',
    ]:
        assert f"\t{line}\n" in "\n".join(body) + "\n", line
    tail = "\n".join(body).split("\ncleanup:\n", 1)[1]
    assert tail.startswith("\t/* leave libbpf as the test found it")
    assert "\tbpf_object__close(obj0);\n\tif (h0 > 0)\n" in tail
    assert all(f"\tif (h{i} > 0)\n\t\tlibbpf_unregister_prog_handler(h{i});" in tail
               for i in range(5))


def test_a_crash_trace_only_makes_the_calls() -> None:
    ops = scenario(load=False)
    source = emit_selftest(trace_of(ops), name="crash", title="crash", summary="no answers")
    assert "the test only makes the calls" in source.replace("\n * ", " ")
    assert messages(body_of(source, "crash")) == []  # no id is checked: no probe either
    assert "check_calls" not in source and "goto" not in source


def test_names() -> None:
    assert selftest_name("divergence-register-rc-ok-EINVAL-1a2b3c4d") == \
        "divergence_register_rc_ok_einval_1a2b3c4d"
    assert selftest_name(slug("crash:heap-buffer-overflow:find_sec_def")) == \
        "crash_heap_buffer_overflow_find_sec_def_" + slug("crash:heap-buffer-overflow:"
                                                          "find_sec_def")[-8:]
    assert selftest_name("--") == "finding"
    with pytest.raises(Exception, match="not a C identifier"):
        emit_selftest(registry_trace(), name="a-b", title="t", summary="s")


def test_findings_write_selftest_c_beside_repro_c(tmp_path: Path) -> None:
    ops: list[Op] = [Register(b"abc", 2, 0), ProgTypeByName(b"abc/x")]
    expected = tuple(Oracle("1.1.2").run(ops))
    actual = (OpResult(expected[0]), OpResult(Answer(0, (2, 0))))
    divergence = Divergence(1, ops[1], expected[1], actual[1].answer)
    outcome = CaseOutcome(tuple(ops), expected, actual, divergence)
    finding = Finding(divergence.signature, "divergence", divergence.describe(), outcome)
    directory = write_finding(tmp_path, finding, LibbpfInfo("1.1.2", "system"), seed=None)
    name = selftest_name(slug(finding.signature))
    assert {p.name for p in directory.iterdir()} == {"finding.json", "trace.jsonl", "repro.c",
                                                    "selftest.c", "summary.md"}
    selftest = (directory / "selftest.c").read_text()
    assert f"\nvoid test_{name}(void)\n{{\n" in selftest
    assert 'ASSERT_EQ(err, -ESRCH, "op1 prog_type_by_name rc");' in selftest  # the oracle's
    assert (f"drop selftest.c into tools/testing/selftests/bpf/prog_tests/ as {name}.c"
            in (directory / "summary.md").read_text())


# ---------------------------------------------------------------------------
# compiled against a stand-in test_progs.h and run on the system libbpf

STAND_IN = r"""/* Stand-in for libbpf's selftests/bpf/test_progs.h, written for these tests: the
 * ASSERT macros the generated selftests use, with the semantics of libbpf's: each
 * argument evaluated once, a PASS or FAIL line naming the fact, the test marked failed,
 * the whole evaluating to whether the check held. */
#ifndef STAND_IN_TEST_PROGS_H
#define STAND_IN_TEST_PROGS_H
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h>

static int stand_in_failures;

#define STAND_IN_CHECK(held, name, fmt, ...) ({					\
	bool ___held = (held);							\
	if (___held) {								\
		printf("%s:PASS:%s\n", __func__, (name));			\
	} else {								\
		stand_in_failures++;						\
		printf("%s:FAIL:%s " fmt "\n", __func__, (name), __VA_ARGS__);	\
	}									\
	___held;								\
})

#define ASSERT_EQ(actual, expected, name) ({					\
	typeof(actual) ___act = (actual);					\
	typeof(expected) ___exp = (expected);					\
	STAND_IN_CHECK(___act == ___exp, name, "unexpected %s: actual %lld != expected %lld", \
		(name), (long long)___act, (long long)___exp);		\
})

#define ASSERT_GT(actual, expected, name) ({					\
	typeof(actual) ___act = (actual);					\
	typeof(expected) ___exp = (expected);					\
	STAND_IN_CHECK(___act > ___exp, name, "unexpected %s: actual %lld <= expected %lld", \
		(name), (long long)___act, (long long)___exp);		\
})

#define ASSERT_OK(res, name) ({							\
	long long ___res = (res);						\
	STAND_IN_CHECK(___res == 0, name, "unexpected error: %lld (errno %d)",	\
		___res, errno);						\
})

#define ASSERT_TRUE(actual, name) ({						\
	bool ___ok = (actual);							\
	STAND_IN_CHECK(___ok, name, "unexpected %s: got FALSE", (name));	\
})

#define ASSERT_STREQ(actual, expected, name) ({					\
	const char *___act = (actual);						\
	const char *___exp = (expected);					\
	STAND_IN_CHECK(strcmp(___act, ___exp) == 0, name,			\
		"unexpected %s: actual '%s' != expected '%s'", (name), ___act, ___exp); \
})
#endif
"""

#: what test_progs does around one test: handlers registered before it (as libbpf's
#: custom_sec_handlers test does from a constructor), then a check that it left none of
#: its own (ids id_first + 1 .. id_first + 1 + registers: the probe's and the trace's)
DRIVER = r"""
int main(void)
{
	char sec[32];
	int i, id, id_first = 0, leaked = 0;

	for (i = 0; i < %(before)d; i++) {
		snprintf(sec, sizeof(sec), "stand_in_before%%d", i);
		id_first = libbpf_register_prog_handler(sec, BPF_PROG_TYPE_SOCKET_FILTER, 0, NULL);
	}
	test_%(name)s();
	for (id = id_first + 1; id <= id_first + 1 + %(registers)d; id++) {
		if (libbpf_unregister_prog_handler(id) != -ENOENT) {
			printf("LEAKED handler %%d\n", id);
			leaked++;
		}
	}
	return leaked ? 2 : stand_in_failures ? 1 : 0;
}
"""


@pytest.fixture
def stand_in(build: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    """``build`` with the stand-in ``test_progs.h``, where ``#include <test_progs.h>`` finds it."""
    (build / "test_progs.h").write_text(STAND_IN)
    monkeypatch.setenv("C_INCLUDE_PATH", str(build))
    return build


def run_selftest(directory: Path, trace: Trace, name: str, *,
                 before: int = 3) -> tuple[int, list[str]]:
    """Compile ``trace``'s selftest with the stand-in and run it: exit status, output lines."""
    source = emit_selftest(trace, name=name, title=name, summary="s")
    registers = sum(isinstance(op, Register) for op in trace.ops)
    driver = DRIVER % {"before": before, "name": name, "registers": registers}
    run = compile_and_run(directory, source + driver, name)
    return run.returncode, run.stdout.splitlines()


def fails(lines: list[str]) -> list[str]:
    return [line for line in lines if ":FAIL:" in line or line.startswith("LEAKED")]


@pytest.mark.libbpf
@pytest.mark.parametrize("before", [0, 3])
def test_registry_selftest_passes_and_a_wrong_answer_fails(stand_in: Path, before: int) -> None:
    code, lines = run_selftest(stand_in, registry_trace(), f"registry{before}", before=before)
    assert (code, fails(lines)) == (0, [])
    assert len(lines) == 13  # every fact passed, and was checked
    records = list(registry_trace().records)
    records[1] = Record(records[1].op, Answer(0, (None, None)))  # really -ESRCH
    wrong = Trace(SYSTEM, tuple(records))
    code, lines = run_selftest(stand_in, wrong, f"wrong{before}", before=before)
    assert code == 1
    assert [line.split(" (errno")[0] for line in fails(lines)] == [
        f"test_wrong{before}:FAIL:op1 prog_type_by_name rc unexpected error: -3"]


@pytest.mark.libbpf
@pytest.mark.parametrize(("case_id", "ops", "answers"), CASES, ids=[c[0] for c in CASES])
def test_divergence_case_selftest_passes_on_system_libbpf(
    stand_in: Path, case_id: str, ops: list[Op], answers: list[Answer]
) -> None:
    needs_bpf(ops)
    code, lines = run_selftest(stand_in, trace_of(ops, answers), case_id)
    assert (code, fails(lines)) == (0, [])


@pytest.mark.libbpf
def test_lifecycle_selftest_passes_unprivileged(stand_in: Path) -> None:
    code, lines = run_selftest(stand_in, scenario_trace(load=False), "open_only")
    assert (code, fails(lines)) == (0, [])


@pytest.mark.libbpf
def test_custom_sec_handlers_selftest_passes_as_root(stand_in: Path) -> None:
    trace = scenario_trace()
    needs_bpf(list(trace.ops))
    code, lines = run_selftest(stand_in, trace, "custom_sec_handlers")
    assert (code, fails(lines)) == (0, [])


@pytest.mark.libbpf
def test_wrong_lifecycle_answer_fails_with_the_named_fact(stand_in: Path) -> None:
    records = list(scenario_trace(load=False).records)

    def change(index: int, **fields: Any) -> None:
        answer = records[index].answer
        assert answer is not None
        records[index] = Record(records[index].op, dataclasses.replace(answer, **fields))

    opened = records[5].answer
    assert opened is not None
    change(5, calls=(opened.calls[0], dataclasses.replace(opened.calls[1], cookie=99),
                     *opened.calls[2:]))
    code, lines = run_selftest(stand_in, Trace(SYSTEM, tuple(records)), "wrong_life")
    assert code == 1
    assert fails(lines) == ["check_calls:FAIL:op5 open call 1 cookie unexpected op5 open call 1"
                            " cookie: actual 2 != expected 99"]


@pytest.mark.libbpf
def test_a_missing_program_fails_and_still_cleans_up(stand_in: Path) -> None:
    ops: list[Op] = [Register(b"socket", 1, 0, HandlerOpts(prog_setup_fn=Callback(0))),
                     Open(ONE), ProgInfo(ObjRef(0), 1), Close(ObjRef(0))]
    answers = Oracle("1.1.2").run(ops)
    answers[1] = dataclasses.replace(answers[1], out=(2,))  # really 1
    answers[2] = Answer(0, (b"g", b"socket", 1, 0, 1))
    code, lines = run_selftest(stand_in, trace_of(ops, answers), "missing")
    assert code == 1  # not 2: the handler was unregistered on the way out
    assert fails(lines) == [
        "test_missing:FAIL:op1 open programs unexpected op1 open programs: actual 1 != expected 2",
        "test_missing:FAIL:op2 prog_info obj0 has program 1 unexpected op2 prog_info obj0 has"
        " program 1: got FALSE"]


@pytest.mark.libbpf
@pytest.mark.parametrize("seed", range(6))
def test_generated_lifecycle_selftests_pass_and_leave_no_handler(stand_in: Path,
                                                                 seed: int) -> None:
    ops = LifecycleGenerator(seed).sequence()
    needs_bpf(ops)
    code, lines = run_selftest(stand_in, trace_of(ops, Oracle("1.1.2").run(ops)), f"gen{seed}")
    assert (code, fails(lines)) == (0, [])


@pytest.mark.libbpf
def test_crash_selftest_crashes_like_the_reproducer(stand_in: Path) -> None:
    ops: list[Op] = [Register(b"a", 1, 0), ProgTypeByName(b"socket"), Fault("null_out")]
    code, _ = run_selftest(stand_in, trace_of(ops), "crash")
    assert code < 0  # killed by a signal inside libbpf
