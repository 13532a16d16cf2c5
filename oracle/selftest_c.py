"""Traces as libbpf selftests: ``emit_selftest(trace, name=..., title=..., summary=...)``.

The source is a ``prog_tests`` file for libbpf's own test runner: dropped into
``tools/testing/selftests/bpf/prog_tests/`` as ``<name>.c``, ``./test_progs -t
<name>`` runs its ``void test_<name>(void)``.  It makes exactly the calls
``repro.c`` makes, from the same plan, statements, callbacks and embedded
object bytes (``oracle.repro_c``'s ``Emitter`` with other hooks), and checks
the same facts with ``test_progs.h``'s ASSERT macros instead of repro.c's
printing helpers.

Rules and invariants:
- One ASSERT per fact repro.c checks, named ``"op<i> <op> <fact>"`` (the op
  names of ``oracle.ops.OP_NAMES``, a fact by its ``OutField.name``): an rc is
  ``ASSERT_OK(err, "op3 unregister rc")`` when 0, else ``ASSERT_EQ(err,
  -EINVAL, "op3 unregister rc")``; an out-parameter ``ASSERT_EQ(prog_type,
  UNTOUCHED, "op1 prog_type_by_name prog_type")``; a getter
  ``ASSERT_STREQ``/``ASSERT_EQ`` (``"op8 prog_info name"``, ``"op8 prog_info
  prog_type"``); callback calls ``check_calls``: their number (``"op5 open
  callback calls"``) and every field of every call (``"op5 open call 1 cookie"``).
  Records without an answer are only called, as in repro.c.
- Handler ids are relative.  test_progs runs every test in one process (and
  libbpf's own custom_sec_handlers test registers handlers from a
  constructor), so the ids libbpf hands out depend on what ran before, while a
  trace's ids are those of a fresh process (1, 2, ...).  The test first
  registers and unregisters a probe handler, ``id_base``; the trace's id N is
  then ``id_base + N``: an expected ``register`` rc N > 0 is asserted as
  ``id_base + N``, and an ``unregister`` of a literal N in ``1..LITERAL_IDS``
  passes ``id_base + N`` (other literals, 0, negative or huge, name no handler
  in either process and are passed as they are).  In a fresh process the probe
  is id 1 and the trace's ids are 2, 3, ...; nothing else changes.
- The test leaves libbpf as it found it: every register's result is kept in
  ``hN``, and at the end every object still open is closed (a ``close`` op
  sets its pointer to NULL) and every ``hN > 0`` unregistered, unchecked (the
  trace may have unregistered it already; ids are never reused).  A program
  the trace had but libbpf lacks fails an ``ASSERT_TRUE`` and jumps to that
  cleanup (where repro.c exits).
- What the process registered before (custom_sec_handlers' ``abc``, ``abc/``
  and ``custom+``) stays visible: a trace whose section names match those
  sees them in test_progs, not in a fresh process.
- No ``main``, no printf: one test function, no subtests (each step depends on
  the ones before it, so none could run or be skipped alone).  The only
  include is ``<test_progs.h>``, which brings in libc's and libbpf's headers.
- ``name`` is a C identifier suffix; ``selftest_name`` derives it from a
  finding's signature slug.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from oracle.errors import BadArgumentError
from oracle.ops import (
    OP_NAMES,
    Answer,
    CallbackCall,
    Close,
    HandleRef,
    ObjRef,
    Op,
    Register,
    Unregister,
)
from oracle.repro_c import (
    PRINTED_CHECKS,
    PROG_GETTERS,
    Emitter,
    Plan,
    c_int,
    c_rc,
    c_string,
    callback_functions,
    comment_text,
    elf_arrays,
    lookup_declarations,
    plan_trace,
    prelude_parts,
    provenance,
    wrap_comment,
)
from oracle.traces import Trace

#: literal ``unregister`` arguments read as handler ids of the trace's fresh process
LITERAL_IDS: Final = 65535
PROBE_SEC: Final = "sec_oracle_id_probe"
_NAME: Final = re.compile(r"[A-Za-z0-9_]+")

_CHECK_CALLS: Final = r"""
static const char *call_fact(char *buf, size_t len, const char *op, int i, const char *field)
{
	snprintf(buf, len, "%s call %d %s", op, i, field);
	return buf;
}

/* the calls since the last check must be these N, in order; then they are forgotten */
static void check_calls(const char *op, int n, const struct call *expected)
{
	char fact[128];
	int i;

	snprintf(fact, sizeof(fact), "%s callback calls", op);
	ASSERT_EQ(ncalls, n, fact);
	for (i = 0; i < n && i < ncalls && i < CALLS_MAX; i++) {
		const struct call *got = &calls[i], *want = &expected[i];

		ASSERT_STREQ(got->callback, want->callback,
				call_fact(fact, sizeof(fact), op, i, "callback"));
		ASSERT_EQ(got->registration, want->registration,
				call_fact(fact, sizeof(fact), op, i, "registration"));
		ASSERT_STREQ(got->program, want->program,
				call_fact(fact, sizeof(fact), op, i, "program"));
		ASSERT_STREQ(got->section, want->section,
				call_fact(fact, sizeof(fact), op, i, "section"));
		ASSERT_EQ(got->cookie, want->cookie, call_fact(fact, sizeof(fact), op, i, "cookie"));
		ASSERT_EQ(got->ret, want->ret, call_fact(fact, sizeof(fact), op, i, "ret"));
	}
	forget_calls();
}"""


def selftest_name(slug: str) -> str:
    """The C identifier a finding's selftest is named by (``test_<name>``, ``<name>.c``)."""
    return re.sub(r"[^a-z0-9]+", "_", slug.lower()).strip("_") or "finding"


def _fact(index: int, op: Op, what: str) -> str:
    return c_string(f"op{index} {OP_NAMES[type(op)]} {what}".encode())


@dataclass
class _AssertEmitter(Emitter):
    """repro_c's statements with ASSERTs as the checks (see module rules)."""

    ids: bool = False  # the id probe is needed
    err: bool = False  # ``int err`` is needed
    gotos: bool = False  # a ``goto cleanup`` was written

    def _id(self, value: int) -> str:
        self.ids = True
        return f"id_base + {value}"

    def check_rc(self, index: int, op: Op, answer: Answer | None, call: str,
                 target: str = "") -> None:
        if answer is None:
            self.emit(f"{target} = {call};" if target else f"{call};")
            return
        var = target or "err"
        self.err |= not target
        self.emit(f"{var} = {call};")
        fact = _fact(index, op, "rc")
        if isinstance(op, Register) and answer.rc > 0:
            self.emit(f"ASSERT_EQ({var}, {self._id(answer.rc)}, {fact});")
        elif answer.rc == 0:
            self.emit(f"ASSERT_OK({var}, {fact});")
        else:
            self.emit(f"ASSERT_EQ({var}, {c_rc(answer.rc)}, {fact});")

    def check_out(self, index: int, op: Op, what: str, got: str, expected: str) -> None:
        self.plan.used.add("out")
        self.emit(f"ASSERT_EQ({got}, {expected}, {_fact(index, op, what)});")

    def check_getter(self, index: int, op: Op, getter: str, is_str: bool, expected: str) -> None:
        fact = _fact(index, op, PROG_GETTERS[getter].name)
        macro = "ASSERT_STREQ" if is_str else "ASSERT_EQ"
        self.emit(f"{macro}({getter}(prog), {expected}, {fact});")

    def check_calls(self, index: int, op: Op, calls: tuple[CallbackCall, ...]) -> None:
        self.plan.used.add("expect_calls")
        self.emit_calls("check_calls", c_string(f"op{index} {OP_NAMES[type(op)]}".encode()),
                        calls)

    def prog_at(self, index: int, op: Op, ref: ObjRef, prog: int) -> str:
        self.plan.used |= {"prog_or_null", "prog_var"}
        self.gotos = True
        self.emit(f"prog = prog_or_null({ref}, {prog});")
        self.emit(f"if (!ASSERT_TRUE(prog, {_fact(index, op, f'{ref} has program {prog}')}))")
        self.emit("\tgoto cleanup;")
        return "prog"

    def handler(self, op: Unregister) -> str:
        if isinstance(op.handler, HandleRef):
            return str(op.handler)
        if 1 <= op.handler <= LITERAL_IDS:
            return self._id(op.handler)
        return c_int(op.handler)

    def close(self, index: int, op: Close) -> None:
        self.emit(f"bpf_object__close({op.obj});")
        self.emit(f"{op.obj} = NULL;")


def _declarations(plan: Plan, emitter: _AssertEmitter) -> Iterator[str]:
    yield from lookup_declarations(plan)
    if plan.opens:
        yield ("struct bpf_object " + ", ".join(f"*obj{i} = NULL" for i in range(plan.opens))
               + ";")
    if "prog_var" in plan.used:
        yield "struct bpf_program *prog;"
    ints = (["id_base"] if emitter.ids else []) + [f"h{i} = 0" for i in sorted(plan.handles)]
    if emitter.err:
        ints.append("err")
    if ints:
        yield "int " + ", ".join(ints) + ";"


_PROBE: Final = (
    "/* handler ids depend on what registered before this test (test_progs runs",
    " * every test in one process): the trace's handler id N is id_base + N here",
    " */",
    f'id_base = libbpf_register_prog_handler("{PROBE_SEC}", BPF_PROG_TYPE_UNSPEC, 0,',
    "\t\t\t\t\t NULL);",
    'if (!ASSERT_GT(id_base, 0, "handler id probe"))',
    "\treturn;",
    'ASSERT_OK(libbpf_unregister_prog_handler(id_base), "handler id probe unregister");',
)


def _test_function(trace: Trace, plan: Plan, name: str) -> str:
    emitter = _AssertEmitter(plan)
    body = emitter.run(trace)
    emitter.lines = []
    for line in _declarations(plan, emitter):
        emitter.emit(line)
    if emitter.lines:
        emitter.emit()
    if emitter.ids:
        for line in _PROBE:
            emitter.emit(line)
        emitter.emit()
    emitter.lines += body
    cleanup = [f"bpf_object__close(obj{i});" for i in range(plan.opens)]
    for i in sorted(plan.handles):
        cleanup += [f"if (h{i} > 0)", f"\tlibbpf_unregister_prog_handler(h{i});"]
    if cleanup:
        emitter.emit()
        if emitter.gotos:
            emitter.lines.append("cleanup:")
        emitter.emit("/* leave libbpf as the test found it: later tests run in this process */")
        for line in cleanup:
            emitter.emit(line)
    return f"void test_{name}(void)\n{{\n" + "\n".join(emitter.lines).rstrip("\n") + "\n}"


def _header(trace: Trace, name: str, title: str, summary: str, plan: Plan) -> str:
    lines = [comment_text(title), ""]
    lines += wrap_comment(comment_text(summary)) or ["(no summary)"]
    lines += ["", *wrap_comment(provenance(trace)), ""]
    if plan.checks_rc:
        lines += wrap_comment("Every fact the trace recorded is one ASSERT, named \"op<i> <op>"
                              " <fact>\" after the trace's op i.")
    else:
        lines += wrap_comment("No answers were recorded: the test only makes the calls, and"
                              " passes once libbpf no longer crashes on them.")
    if plan.needs_root:
        lines += wrap_comment("bpf_object__load and bpf_program__attach make bpf() calls: it"
                              " needs the privileges test_progs runs with.")
    lines += ["", f"Drop into tools/testing/selftests/bpf/prog_tests/{name}.c and run",
              f"  ./test_progs -t {name}"]
    body = "\n".join(f" * {line}".rstrip() for line in lines)
    return f"// SPDX-License-Identifier: GPL-2.0\n/*\n{body}\n */"


def _prelude(plan: Plan) -> str:
    parts = [text for key, text in prelude_parts(plan) if key not in PRINTED_CHECKS]
    if "expect_calls" in plan.used:
        parts.append(_CHECK_CALLS)
    return "\n".join(parts)


def emit_selftest(trace: Trace, *, name: str, title: str, summary: str) -> str:
    """The prog_tests selftest ``test_<name>`` of ``trace`` (see module rules)."""
    if not _NAME.fullmatch(name):
        raise BadArgumentError(f"selftest name {name!r} is not a C identifier suffix")
    plan = plan_trace(trace)
    plan.handles = set(range(sum(isinstance(op, Register) for op in trace.ops)))
    function = _test_function(trace, plan, name)  # first: it fills in ``plan.used``
    parts = [_header(trace, name, title, summary, plan), "#include <test_progs.h>",
             elf_arrays(plan), _prelude(plan), callback_functions(plan), function]
    return "\n\n".join(p.strip("\n") for p in parts if p) + "\n"


__all__: Sequence[str] = ["LITERAL_IDS", "emit_selftest", "selftest_name"]
