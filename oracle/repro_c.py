"""Traces as standalone C reproducers: ``emit_c(trace, title=..., summary=...)``.

The program uses only libbpf's public API and builds with ``cc repro.c -lbpf``
(``-Wall -Werror`` clean); its shape follows libbpf's selftests
(``prog_tests/custom_sec_handlers.c``): flat, one call per line, one check
per fact.

Rules and invariants:
- Record ``i`` becomes "op i": the call, then one check per fact of its
  recorded answer: ``rc``, then each out-parameter (by its ``OutField.name``
  in ``oracle.ops.OP_SPECS``: a lookup's are variables of that name, ``open``'s
  is ``programs``, ``prog_info``'s are its getters' calls), then (see below)
  the callback calls.  A passing fact prints ``ok   op i CALL: ...``; a failing
  one ``FAIL op i CALL: rc expected -ESRCH (-3), got 0`` (``CALL`` is the C
  source of the call, via the preprocessor's ``#``).  ``main`` returns 1 if
  any fact failed, else 0; the last line is ``PASS: ...`` or ``FAIL: ...``.
  Records without an answer are only called, so a trace without answers is a
  crash reproducer: it makes the calls and lets the sanitizer (or the kernel)
  speak.
- Out-parameters are set to ``UNTOUCHED`` (0xC0DEFACE) before each lookup; an
  answer's ``None`` ("libbpf left it untouched") is checked as "still
  ``UNTOUCHED``".  (A handler registered with the type 0xC0DEFACE makes the two
  indistinguishable; such a check can pass wrongly but never fail wrongly.)
- Strings are C literals: printable ASCII as itself (``\\``, ``"`` and a
  ``?`` after ``?`` escaped), every other byte as a 3-digit octal escape, so
  no escape can swallow the next character; ``None`` is ``NULL``.
- Opts with the standard layout (``sz == 40``, no tail) are written with
  ``LIBBPF_OPTS(libbpf_prog_handler_opts, ...)`` (guarded by a
  ``_Static_assert`` that the header's struct is 40 bytes).  Any other opts are
  laid out byte for byte in a zeroed buffer, exactly ``HandlerOpts.to_bytes``:
  ``sz`` at 0, ``cookie`` at 8, callback pointers at 16/24/32, ``tail`` at 40.
- Callbacks are static functions returning the recorded ``Callback.ret``.
  Without object ops (nothing can call them) there is one per (kind, value),
  ``setup_ret_m1``.  With object ops and answers there is one per (kind,
  registration), ``setup_h3``: it records the call (callback, registration,
  program name, section name, cookie, return value) and after each ``open``,
  ``load`` and ``attach`` (and any op whose answer has calls) the recorded
  calls are checked against the answer's, one fact for their number and one
  per call, then forgotten.  ``HandleRef(n)`` is the variable ``hn`` holding
  the n-th register's return.
- Object ops mirror ``oracle.libbpf.lifecycle`` (the worker): ``Open`` is
  ``bpf_object__open_mem`` of the object's bytes (``build_object(spec)`` or
  the raw bytes), embedded as ``static const unsigned char objN_elf[]``, its
  rc 0 or ``libbpf_get_error`` (-1 for NULL without an error) and its out the
  number of programs ``bpf_object__next_program`` walks; a program is the
  ``prog``-th in that order (``prog_at``); ``ProgInfo`` calls each getter and
  checks what it returns (strings with ``strcmp``; its rc 0 is the harness's
  and not checked);
  ``Attach`` is ``bpf_program__attach`` then ``bpf_link__destroy`` of any
  link, rc 0 or ``libbpf_get_error``; ``Close``'s rc (always 0) is not
  checked.
- The harness conventions (``oracle.ops``) are applied as the trace recorded
  them: an op on an object that is not open (its recorded open failed, or it
  was closed), or on a program index outside the recorded count, and a
  ``load``/``attach`` recorded as ``NO_BPF``, become a comment: libbpf was
  not called, so nothing is called or checked.  Should a program the trace
  had be missing at run time, ``prog_at`` fails that fact and stops the
  program (the rest would dereference NULL).  Where an open's answer was not
  recorded, the conventions are applied at run time instead:
  ``if (obj0)``, ``if ((prog = prog_or_null(obj0, 2)))``.
- Only what the program uses is emitted (``-Wall``).  A program with
  ``load`` or ``attach`` says in its header that it needs root.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from oracle.bpfelf import ObjectSpec, build_object
from oracle.errors import BadArgumentError
from oracle.ops import (
    CALLING_OPS,
    INT_MAX,
    LIFECYCLE_OPS,
    NO_BPF,
    NO_OBJECT,
    NO_PROGRAM,
    OP_SPECS,
    OPTS_STRUCT_SIZE,
    OUT_NAMES,
    Answer,
    Attach,
    AttachTypeByName,
    Callback,
    CallbackCall,
    Close,
    Fault,
    HandleRef,
    HandlerOpts,
    Load,
    ObjRef,
    Op,
    Open,
    OutField,
    ProgInfo,
    ProgTypeByName,
    Register,
    SetAutoload,
    SetType,
    Unregister,
)
from oracle.traces import ERRNO_NAME, Trace

UNTOUCHED: Final = 0xC0DEFACE
#: the getter of each out-parameter ``ProgInfo`` reports (its ``OutField``, in ``Answer.out``
#: order: the name a fact has, and whether it is a string)
PROG_GETTERS: Final[dict[str, OutField]] = dict(zip(
    ("bpf_program__name", "bpf_program__section_name", "bpf_program__type",
     "bpf_program__expected_attach_type", "bpf_program__autoload"),
    OP_SPECS[ProgInfo].out, strict=True))
#: errnos the rc printer always knows, on top of those the trace expects
COMMON_ERRNOS: Final = (1, 2, 3, 7, 12, 16, 17, 22, 95)
CALLBACK_KINDS: Final = (
    ("prog_setup_fn", "setup", "libbpf_prog_setup_fn_t",
     "struct bpf_program *prog, long cookie"),
    ("prog_prepare_load_fn", "prepare", "libbpf_prog_prepare_load_fn_t",
     "struct bpf_program *prog, struct bpf_prog_load_opts *opts, long cookie"),
    ("prog_attach_fn", "attach", "libbpf_prog_attach_fn_t",
     "const struct bpf_program *prog, long cookie, struct bpf_link **link"),
)
OFFSETS: Final = {"sz": 0, "cookie": 8, "prog_setup_fn": 16, "prog_prepare_load_fn": 24,
                  "prog_attach_fn": 32}
ELF_BYTES_PER_LINE: Final = 12


# ---------------------------------------------------------------------------
# C literals


def c_string(value: bytes | None) -> str:
    """A C string literal for ``value`` (see module rules), ``NULL`` for None."""
    if value is None:
        return "NULL"
    out = []
    prev = 0
    for byte in value:
        if byte in (0x22, 0x5C) or (byte == 0x3F and prev == 0x3F):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
        prev = byte
    return '"' + "".join(out) + '"'


def c_int(value: int) -> str:
    return "(-2147483647 - 1)" if value == -(2**31) else str(value)


def c_rc(value: int) -> str:
    """An expected return value: ``-EINVAL`` when it is a known errno."""
    if value < 0 and -value in ERRNO_NAME:
        return f"-{ERRNO_NAME[-value]}"
    return c_int(value)


def c_u32(value: int) -> str:
    return str(value) if value <= INT_MAX else f"{value}u"


def c_long(value: int) -> str:
    return "(-9223372036854775807L - 1)" if value == -(2**63) else f"{value}L"


def _ident(value: int) -> str:
    return f"m{-value}" if value < 0 else str(value)


def comment_text(text: str) -> str:
    """Text that cannot end a C comment or form a trigraph."""
    return text.replace("/*", "/ *").replace("*/", "* /").replace("??", "? ?")


# ---------------------------------------------------------------------------
# what the program needs


@dataclass
class Plan:
    """What the trace needs declared: one pass over the records before ``main``, and
    ``used`` (the helpers ``main`` calls) filled in while ``main`` is written."""

    handles: set[int] = field(default_factory=set)  # HandleRef indexes used
    #: callback function name -> (kind, value it returns, registration or None)
    callbacks: dict[str, tuple[str, int, int | None]] = field(default_factory=dict)
    errnos: set[int] = field(default_factory=lambda: set(COMMON_ERRNOS))
    checks_rc: bool = False
    records_calls: bool = False  # callbacks record their calls, answers' calls are checked
    lookups: set[type] = field(default_factory=set)
    standard_opts: bool = False
    raw_opts: bool = False
    faults: set[str] = field(default_factory=set)
    #: object bytes -> (array name, whether they came from an ObjectSpec)
    elf: dict[bytes, tuple[str, bool]] = field(default_factory=dict)
    opens: int = 0
    needs_root: bool = False
    max_calls: int = 0
    used: set[str] = field(default_factory=set)

    @property
    def calls_block(self) -> bool:
        """Whether the call recorder (``struct call``, ``calls[]``) is needed."""
        return self.records_calls and bool(self.callbacks or self.used & {"expect_calls",
                                                                          "forget"})


def is_standard(opts: HandlerOpts) -> bool:
    return opts.sz == OPTS_STRUCT_SIZE and not opts.tail


def elf_bytes(obj: ObjectSpec | bytes) -> bytes:
    """The bytes an ``Open`` passes to ``bpf_object__open_mem``."""
    return build_object(obj) if isinstance(obj, ObjectSpec) else bytes(obj)


def plan_trace(trace: Trace) -> Plan:
    plan = Plan()
    ops = [r.op for r in trace.records]
    has_callbacks = any(isinstance(op, Register) and op.opts is not None
                        and any(getattr(op.opts, kind) for kind, *_ in CALLBACK_KINDS)
                        for op in ops)
    for record in trace.records:
        op, answer = record.op, record.answer
        if isinstance(op, Fault):
            plan.faults.add(op.kind)
        elif answer is not None:
            plan.checks_rc = True
            if answer.rc < 0 and -answer.rc in ERRNO_NAME:
                plan.errnos.add(-answer.rc)
            plan.max_calls = max(plan.max_calls, len(answer.calls))
    plan.records_calls = plan.checks_rc and has_callbacks and (
        any(isinstance(op, LIFECYCLE_OPS) for op in ops)
        or any(r.answer is not None and r.answer.calls for r in trace.records))
    registers = 0
    for op in ops:
        if isinstance(op, Unregister) and isinstance(op.handler, HandleRef):
            plan.handles.add(op.handler.index)
        if isinstance(op, Register):
            if op.opts is not None:
                _plan_opts(plan, op.opts, registers)
            registers += 1
        if isinstance(op, ProgTypeByName | AttachTypeByName):
            plan.lookups.add(type(op))
        if isinstance(op, Open):
            plan.elf.setdefault(elf_bytes(op.obj),
                                (f"obj{plan.opens}_elf", isinstance(op.obj, ObjectSpec)))
            plan.opens += 1
    return plan


def _plan_opts(plan: Plan, opts: HandlerOpts, registration: int) -> None:
    if is_standard(opts):
        plan.standard_opts = True
    else:
        plan.raw_opts = True
    for kind, _, _, _ in CALLBACK_KINDS:
        cb: Callback | None = getattr(opts, kind)
        if cb is not None:
            reg = registration if plan.records_calls else None
            plan.callbacks[callback_name(plan, kind, cb, registration)] = (kind, cb.ret, reg)


def callback_name(plan: Plan, kind: str, cb: Callback, registration: int) -> str:
    short = next(s for k, s, _, _ in CALLBACK_KINDS if k == kind)
    if plan.records_calls:
        return f"{short}_h{registration}"
    return f"{short}_ret_{_ident(cb.ret)}"


# ---------------------------------------------------------------------------
# the program's parts


def provenance(trace: Trace) -> str:
    """Where the trace comes from: the libbpf build, its origin and when (comment text)."""
    h = trace.header
    info = h.libbpf
    build = f"{info.variant} build" if info.variant not in ("system", "path") else info.variant
    return (f"Recorded against libbpf {info.version} ({build})"
            + (f", sha256 {info.so_sha256}" if info.so_sha256 else "")
            + (f", {comment_text(info.path)}" if info.path else "")
            + f"; trace origin {h.origin}"
            + (f", seed {h.seed}" if h.seed is not None else "")
            + f", created {h.created} by libbpf-sec-oracle {h.oracle_version}.")


def _header(trace: Trace, title: str, summary: str, plan: Plan) -> str:
    info = trace.header.libbpf
    lines = [comment_text(title), ""]
    lines += wrap_comment(comment_text(summary)) or ["(no summary)"]
    lines += [""]
    lines += wrap_comment(provenance(trace))
    if plan.checks_rc:
        lines += ["", "Each checked fact prints \"ok\" or \"FAIL ... expected X, got Y\";",
                  "the exit status is 1 if any fact failed, 0 otherwise."]
    else:
        lines += ["", "No answers were recorded: this program only makes the calls (a crash",
                  "reproducer: run it against the build that crashed)."]
    if plan.needs_root:
        lines += ["", "bpf_object__load and bpf_program__attach make bpf() calls: run it as",
                  "root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN), or they fail with -EPERM."]
    lines += [
        "",
        "Build and run against the system libbpf (libbpf-dev):",
        "  cc -Wall -o repro repro.c -lbpf && ./repro",
        "Against a libbpf build in DIR (libbpf.so.1) with its headers in INC:",
        "  cc -Wall -o repro repro.c -I INC -L DIR -lbpf && LD_LIBRARY_PATH=DIR ./repro",
    ]
    if info.variant in ("asan", "fuzz"):
        lines += ["A sanitizer build of libbpf needs the ASan runtime preloaded:",
                  "  LD_PRELOAD=$(clang -print-file-name=libclang_rt.asan-x86_64.so) \\",
                  "    LD_LIBRARY_PATH=DIR ./repro"]
    body = "\n".join(f" * {line}".rstrip() for line in lines)
    return f"/*\n{body}\n */"


def wrap_comment(text: str) -> list[str]:
    """Comment lines of at most 76 columns; paths and hashes are never split."""
    return textwrap.wrap(text, 76, break_long_words=False, break_on_hyphens=False)


def _includes(plan: Plan) -> str:
    names = ["errno.h", "stdio.h"]
    if "abort" in plan.faults or "prog_at" in plan.used or plan.calls_block:
        names.append("stdlib.h")
    if plan.raw_opts or "str" in plan.used or plan.calls_block:
        names.append("string.h")
    if "hang" in plan.faults:
        names.append("unistd.h")
    return "\n".join(f"#include <{n}>" for n in sorted(names)) + "\n#include <bpf/libbpf.h>"


_FACTS: Final = "static int facts, failures;"

_RC_CHECK: Final = r"""static const char *last_call;

static const char *rc_str(char *buf, size_t len, int rc)
{
	static const struct { int err; const char *name; } names[] = {
%s
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (rc == -names[i].err) {
			snprintf(buf, len, "-%%s (%%d)", names[i].name, rc);
			return buf;
		}
	}
	snprintf(buf, len, "%%d", rc);
	return buf;
}

static int expect_rc(int op, const char *call, int got, int expected)
{
	char g[64], e[64];

	facts++;
	last_call = call;
	if (got == expected) {
		printf("ok   op %%d %%s: rc %%s\n", op, call, rc_str(g, sizeof(g), got));
		return got;
	}
	failures++;
	rc_str(e, sizeof(e), expected);
	printf("FAIL op %%d %%s: rc expected %%s, got %%s\n", op, call, e, rc_str(g, sizeof(g), got));
	return got;
}

/* run CALL, check its return value; evaluates to that value */
#define EXPECT_RC(op, expected, call) expect_rc(op, #call, (call), expected)"""

_UNTOUCHED: Final = r"""
/* out-parameters hold this before each lookup: still there means untouched */
#define UNTOUCHED 0xC0DEFACEu"""

_OUT_CHECK: Final = r"""
static const char *out_str(char *buf, size_t len, unsigned int value)
{
	if (value == UNTOUCHED)
		snprintf(buf, len, "untouched");
	else
		snprintf(buf, len, "%u", value);
	return buf;
}

static void expect_out(int op, const char *what, unsigned int got, unsigned int expected)
{
	char g[32], e[32];

	facts++;
	if (got == expected) {
		printf("ok   op %d %s: %s %s\n", op, last_call, what, out_str(g, sizeof(g), got));
		return;
	}
	failures++;
	out_str(e, sizeof(e), expected);
	printf("FAIL op %d %s: %s expected %s, got %s\n", op, last_call, what, e, out_str(g, 32, got));
}"""

_STR_CHECK: Final = r"""
static void expect_str(int op, const char *call, const char *what, const char *got,
		const char *expected)
{
	facts++;
	if (got && strcmp(got, expected) == 0) {
		printf("ok   op %d %s: %s \"%s\"\n", op, call, what, got);
		return;
	}
	failures++;
	printf("FAIL op %d %s: %s expected \"%s\", got %s%s%s\n", op, call, what, expected,
		got ? "\"" : "", got ? got : "NULL", got ? "\"" : "");
}

/* run CALL (a string getter), check what it returns (the fact WHAT) */
#define EXPECT_STR(op, what, expected, call) expect_str(op, #call, what, (call), expected)"""

_U32_CHECK: Final = r"""
static void expect_u32(int op, const char *call, const char *what, unsigned int got,
		unsigned int expected)
{
	facts++;
	if (got == expected) {
		printf("ok   op %d %s: %s %u\n", op, call, what, got);
		return;
	}
	failures++;
	printf("FAIL op %d %s: %s expected %u, got %u\n", op, call, what, expected, got);
}

/* run CALL (a getter), check what it returns (the fact WHAT) */
#define EXPECT_U32(op, what, expected, call) expect_u32(op, #call, what, (call), expected)"""

_PUT: Final = r"""
/* store VAL's bytes at OFF of BUF: opts laid out exactly as recorded */
#define PUT(buf, off, val) do { __typeof__(val) v_ = (val); \
	memcpy((buf) + (off), &v_, sizeof(v_)); } while (0)"""

_OPEN: Final = r"""
/* bpf_object__open_mem as the harness calls it: 0, or libbpf_get_error (-1 if none) */
static int open_object(struct bpf_object **obj, const unsigned char *elf, size_t size)
{
	long err;

	*obj = bpf_object__open_mem(elf, size, NULL);
	err = libbpf_get_error(*obj);
	if (err || !*obj) {
		*obj = NULL;
		return err ? (int)err : -1;
	}
	return 0;
}"""

_COUNT: Final = r"""
/* how many programs bpf_object__next_program walks (UNTOUCHED: no object) */
static unsigned int count_programs(const struct bpf_object *obj)
{
	struct bpf_program *prog = NULL;
	unsigned int n = 0;

	if (!obj)
		return UNTOUCHED;
	while ((prog = bpf_object__next_program(obj, prog)))
		n++;
	return n;
}"""

_PROG_OR_NULL: Final = r"""
/* the INDEX-th program of OBJ in bpf_object__next_program order, NULL if there is none */
static struct bpf_program *prog_or_null(const struct bpf_object *obj, int index)
{
	struct bpf_program *prog = NULL;
	int i;

	for (i = 0; obj && i <= index; i++)
		if (!(prog = bpf_object__next_program(obj, prog)))
			break;
	return prog;
}"""

_PROG_AT: Final = r"""
/* the same, for a program the trace recorded: stops (a failed fact) if there is none */
static struct bpf_program *prog_at(int op, const struct bpf_object *obj, int index)
{
	struct bpf_program *prog = prog_or_null(obj, index);

	if (!prog) {
%s
		exit(1);
	}
	return prog;
}"""
_PROG_AT_FAIL: Final = r"""		facts++;
		failures++;
		printf("FAIL op %d: the object has no program %d: stopping\n", op, index);
		printf("FAIL: %d of %d facts hold\n", facts - failures, facts);"""
_PROG_AT_STOP: Final = (
    r"""		printf("op %d: the object has no program %d: stopping\n", op, index);""")

_ATTACH: Final = r"""
/* bpf_program__attach as the harness calls it: 0 (the link is destroyed at once),
 * or libbpf_get_error (-1 if none) */
static int attach_program(struct bpf_program *prog)
{
	struct bpf_link *link = bpf_program__attach(prog);
	long err = libbpf_get_error(link);

	if (err || !link)
		return err ? (int)err : -1;
	bpf_link__destroy(link);
	return 0;
}"""

_CALLS: Final = r"""
/* the handler callbacks libbpf called since the last check, in order */
struct call {
	const char *callback;
	int registration;	/* hN: the Nth register op's opts held the callback */
	const char *program, *section;
	long cookie;
	int ret;		/* what the callback returned to libbpf */
};

#define CALLS_MAX %d
static struct call calls[CALLS_MAX];
static int ncalls;"""

_CALLED: Final = r"""
/* every callback: record the call, return the recorded value */
static int called(const char *callback, int registration, const struct bpf_program *prog,
		long cookie, int ret)
{
	if (ncalls < CALLS_MAX)
		calls[ncalls] = (struct call){ callback, registration,
			strdup(bpf_program__name(prog)), strdup(bpf_program__section_name(prog)),
			cookie, ret };
	ncalls++;
	return ret;
}"""

_FORGET: Final = r"""
static void forget_calls(void)
{
	int i;

	for (i = 0; i < ncalls && i < CALLS_MAX; i++) {
		free((char *)calls[i].program);
		free((char *)calls[i].section);
	}
	ncalls = 0;
}"""

_EXPECT_CALLS: Final = r"""
static const char *call_str(char *buf, size_t len, const struct call *c)
{
	if (!c)
		snprintf(buf, len, "none");
	else
		snprintf(buf, len, "%s of h%d on %s (SEC \"%s\") cookie %ld returned %d",
			c->callback, c->registration, c->program, c->section, c->cookie, c->ret);
	return buf;
}

static int same_call(const struct call *a, const struct call *b)
{
	return a && b && strcmp(a->callback, b->callback) == 0 &&
		a->registration == b->registration && strcmp(a->program, b->program) == 0 &&
		strcmp(a->section, b->section) == 0 && a->cookie == b->cookie && a->ret == b->ret;
}

/* the calls since the last check must be these N, in order; then they are forgotten */
static void expect_calls(int op, int n, const struct call *expected)
{
	char g[512], e[512];
	int i;

	facts++;
	if (ncalls == n) {
		printf("ok   op %d %s: %d callback calls\n", op, last_call, n);
	} else {
		failures++;
		printf("FAIL op %d %s: callback calls expected %d, got %d\n", op, last_call, n, ncalls);
	}
	for (i = 0; i < CALLS_MAX && (i < n || i < ncalls); i++) {
		const struct call *got = i < ncalls ? &calls[i] : NULL;
		const struct call *want = i < n ? &expected[i] : NULL;

		facts++;
		if (same_call(got, want)) {
			printf("ok   op %d %s: call %d %s\n", op, last_call, i,
				call_str(g, sizeof(g), got));
			continue;
		}
		failures++;
		call_str(e, sizeof(e), want);
		printf("FAIL op %d %s: call %d expected %s, got %s\n", op, last_call, i, e,
			call_str(g, sizeof(g), got));
	}
	forget_calls();
}"""


#: the prelude parts that check facts by printing ``ok``/``FAIL`` (what a selftest's ASSERTs
#: replace); the other parts are the harness helpers any program of the trace needs
PRINTED_CHECKS: Final = frozenset({"facts", "rc", "out", "str", "u32", "prog_at", "expect_calls"})


def prelude_parts(plan: Plan) -> list[tuple[str, str]]:
    """The helpers ``main`` uses, in order, each as ``(key, C text)`` (see ``PRINTED_CHECKS``)."""
    used = plan.used
    parts = []
    if plan.checks_rc:
        parts.append(("facts", _FACTS))
    if "rc" in used:
        names = ",\n".join(f'\t\t{{ {ERRNO_NAME[e]}, "{ERRNO_NAME[e]}" }}'
                           for e in sorted(plan.errnos))
        parts.append(("rc", "\n" + _RC_CHECK % names))
    if used & {"out", "count"}:
        parts.append(("untouched", _UNTOUCHED))
    if "out" in used:
        parts.append(("out", _OUT_CHECK))
    if "str" in used:
        parts.append(("str", _STR_CHECK))
    if "u32" in used:
        parts.append(("u32", _U32_CHECK))
    if plan.raw_opts:
        parts.append(("put", _PUT))
    if plan.standard_opts:
        parts.append(("opts_size",
                      "\n_Static_assert(sizeof(struct libbpf_prog_handler_opts) == 40,\n"
                      '\t       "the recorded opts are the 40-byte struct of libbpf 1.x");'))
    if "open" in used:
        parts.append(("open", _OPEN))
    if "count" in used:
        parts.append(("count", _COUNT))
    if used & {"prog_at", "prog_or_null"}:
        parts.append(("prog_or_null", _PROG_OR_NULL))
    if "prog_at" in used:
        parts.append(("prog_at", _PROG_AT % (_PROG_AT_FAIL if plan.checks_rc else _PROG_AT_STOP)))
    if "attach" in used:
        parts.append(("attach", _ATTACH))
    if plan.calls_block:
        parts.append(("calls", _CALLS % max(16, plan.max_calls + 8)))
        if plan.callbacks:
            parts.append(("called", _CALLED))
        if used & {"expect_calls", "forget"}:
            parts.append(("forget", _FORGET))
        if "expect_calls" in used:
            parts.append(("expect_calls", _EXPECT_CALLS))
    return parts


def _prelude(plan: Plan) -> str:
    return "\n".join(text for _, text in prelude_parts(plan))


def callback_functions(plan: Plan) -> str:
    signature = {kind: params for kind, _, _, params in CALLBACK_KINDS}
    order = {kind: i for i, (kind, *_) in enumerate(CALLBACK_KINDS)}

    def body(kind: str, ret: int, registration: int | None) -> str:
        if registration is None:
            return f"return {c_int(ret)};"
        return f'return called("{kind}", {registration}, prog, cookie, {c_int(ret)});'

    items = sorted(plan.callbacks.items(),
                   key=lambda kv: (kv[1][2] or 0, order[kv[1][0]], kv[0]))
    return "\n\n".join(
        f"static int {name}({signature[kind]})\n{{\n\t{body(kind, ret, reg)}\n}}"
        for name, (kind, ret, reg) in items
    )


def elf_arrays(plan: Plan) -> str:
    arrays = []
    for data, (name, built) in plan.elf.items():
        if not data:  # ISO C has no empty array: a 1-byte one, passed with size 0
            arrays.append(f"/* {name}: 0 bytes */\nstatic const unsigned char {name}[1];")
            continue
        rows = [", ".join(f"0x{b:02x}" for b in data[i:i + ELF_BYTES_PER_LINE])
                for i in range(0, len(data), ELF_BYTES_PER_LINE)]
        what = ("the object oracle.bpfelf builds from the recorded spec" if built
                else "the recorded raw bytes")
        arrays.append(f"/* {name}: {len(data)} bytes, {what} */\n"
                      f"static const unsigned char {name}[] = {{\n\t"
                      + ",\n\t".join(rows) + ",\n};")
    return "\n\n".join(arrays)


# ---------------------------------------------------------------------------
# main()


@dataclass
class ObjectState:
    """What the trace recorded of one ``Open``'s object, for the harness conventions."""

    name: str
    is_open: bool | None  # None: the open's answer was not recorded
    programs: int | None = None
    why: str = ""  # why it is not open


@dataclass
class Emitter:
    """Writes ``main``'s statements, one record at a time.

    How a fact is checked is this class's hooks (``check_rc``, ``check_out``,
    ``check_getter``, ``check_calls``, ``prog_at``), and how an op names a
    handler or closes an object (``handler``, ``close``): a subclass with other
    hooks writes the same calls with other checks (``oracle.selftest_c``).
    """

    plan: Plan
    registers: int = 0
    objects: list[ObjectState] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def emit(self, line: str = "") -> None:
        self.lines.append(f"\t{line}" if line else "")

    def run(self, trace: Trace) -> list[str]:
        """The statements of every record of ``trace``; fills in ``plan.used``."""
        for index, record in enumerate(trace.records):
            self.record(index, record.op, record.answer)
        return self.lines

    def record(self, index: int, op: Op, answer: Answer | None) -> None:
        if isinstance(op, Register):
            self._register(index, op, answer)
            self._calls(index, op, answer)
        elif isinstance(op, Unregister):
            self.check_rc(index, op, answer,
                          f"libbpf_unregister_prog_handler({self.handler(op)})")
            self._calls(index, op, answer)
        elif isinstance(op, ProgTypeByName | AttachTypeByName):
            self._lookup(index, op, answer)
            self._calls(index, op, answer)
        elif isinstance(op, Fault):
            self._fault(op)
        elif isinstance(op, LIFECYCLE_OPS):
            self._lifecycle(index, op, answer)
        else:
            raise BadArgumentError(f"no C form for op {op!r}")

    # -- the hooks -------------------------------------------------------------

    def check_rc(self, index: int, op: Op, answer: Answer | None, call: str,
                 target: str = "") -> None:
        """``call`` (its value assigned to ``target``), its rc checked if answered."""
        assign = f"{target} = " if target else ""
        if answer is None:
            self.emit(f"{assign}{call};")
        else:
            self.plan.used.add("rc")
            self.emit(f"{assign}EXPECT_RC({index}, {c_rc(answer.rc)}, {call});")

    def check_out(self, index: int, op: Op, what: str, got: str, expected: str) -> None:
        """Check an out-parameter (C expression ``got``) against ``expected``."""
        self.plan.used.add("out")
        self.emit(f'expect_out({index}, "{what}", {got}, {expected});')

    def check_getter(self, index: int, op: Op, getter: str, is_str: bool, expected: str) -> None:
        """Check what ``getter(prog)`` returns against ``expected`` (a C literal)."""
        what = PROG_GETTERS[getter].name
        if is_str:
            self.plan.used.add("str")
            self.emit(f'EXPECT_STR({index}, "{what}", {expected}, {getter}(prog));')
        else:
            self.plan.used.add("u32")
            self.emit(f'EXPECT_U32({index}, "{what}", {expected}, {getter}(prog));')

    def check_calls(self, index: int, op: Op, calls: tuple[CallbackCall, ...]) -> None:
        """Check the callback calls recorded since the last check against ``calls``."""
        self.plan.used.add("expect_calls")
        self.emit_calls("expect_calls", str(index), calls)

    def emit_calls(self, function: str, first: str, calls: tuple[CallbackCall, ...]) -> None:
        """``function(first, n, calls)``: the C call that checks recorded callback calls."""
        if not calls:
            self.emit(f"{function}({first}, 0, NULL);")
            return
        self.emit(f"{function}({first}, {len(calls)}, (const struct call[]){{")
        for call in calls:
            self.emit(f"\t{call_literal(call)},")
        self.emit("});")

    def prog_at(self, index: int, op: Op, ref: ObjRef, prog: int) -> str:
        """A C expression for the ``prog``-th program of ``ref``, which the trace had."""
        self.plan.used.add("prog_at")
        return f"prog_at({index}, {ref}, {prog})"

    def handler(self, op: Unregister) -> str:
        """The C argument of an ``Unregister``."""
        return str(op.handler) if isinstance(op.handler, HandleRef) else c_int(op.handler)

    def close(self, index: int, op: Close) -> None:
        self.emit(f"bpf_object__close({op.obj});")

    # -- the ops -----------------------------------------------------------------

    def _register(self, index: int, op: Register, answer: Answer | None) -> None:
        handle = self.registers
        self.registers += 1
        opts = "NULL"
        if op.opts is not None:
            opts = self._opts(index, op.opts, handle)
        call = (f"libbpf_register_prog_handler({c_string(op.sec)}, {c_u32(op.prog_type)},"
                f" {c_u32(op.exp_attach_type)}, {opts})")
        self.check_rc(index, op, answer, call,
                      f"h{handle}" if handle in self.plan.handles else "")

    def _opts(self, index: int, opts: HandlerOpts, registration: int) -> str:
        name = f"opts{index}"
        callbacks = [(kind, callback_name(self.plan, kind, cb, registration), ctype)
                     for kind, _, ctype, _ in CALLBACK_KINDS
                     if (cb := getattr(opts, kind)) is not None]
        if is_standard(opts):
            fields = ([f".cookie = {c_long(opts.cookie)}"] if opts.cookie else [])
            fields += [f".{kind} = {fn}" for kind, fn, _ in callbacks]
            if len(fields) <= 1:
                self.emit(f"LIBBPF_OPTS(libbpf_prog_handler_opts, {', '.join([name, *fields])});")
            else:
                self.emit(f"LIBBPF_OPTS(libbpf_prog_handler_opts, {name},")
                for i, item in enumerate(fields):
                    self.emit(f"\t{item}{');' if i == len(fields) - 1 else ','}")
            return f"&{name}"
        size = OPTS_STRUCT_SIZE + len(opts.tail)
        tail = f"{len(opts.tail)} bytes after the struct" if opts.tail else "no tail"
        self.emit(f"/* opts{index}: sz {opts.sz}, {tail}: every byte as recorded */")
        self.emit(f"union {{ struct libbpf_prog_handler_opts opts; unsigned char raw[{size}]; }}"
                  f" {name};")
        self.emit(f"memset(&{name}, 0, sizeof({name}));")
        self.emit(f"PUT({name}.raw, 0, (size_t){opts.sz}{'' if opts.sz <= INT_MAX else 'ULL'});")
        if opts.cookie:
            self.emit(f"PUT({name}.raw, 8, {c_long(opts.cookie)});")
        for kind, fn, ctype in callbacks:
            self.emit(f"PUT({name}.raw, {OFFSETS[kind]}, ({ctype}){fn});")
        if opts.tail:
            octal = "".join(f"\\{b:03o}" for b in opts.tail)
            self.emit(f'memcpy({name}.raw + {OPTS_STRUCT_SIZE}, "{octal}", {len(opts.tail)});')
        return f"&{name}.opts"

    def _lookup(self, index: int, op: ProgTypeByName | AttachTypeByName,
                answer: Answer | None) -> None:
        outs = OUT_NAMES[type(op)]
        if answer is not None and answer.out:
            for out in outs:
                self.emit(f"{out} = UNTOUCHED;")
        func = ("libbpf_prog_type_by_name" if isinstance(op, ProgTypeByName)
                else "libbpf_attach_type_by_name")
        args = ", ".join([c_string(op.name), *(f"&{o}" for o in outs)])
        self.check_rc(index, op, answer, f"{func}({args})")
        if answer is not None:
            for what, value in zip(outs, answer.out, strict=True):
                assert not isinstance(value, bytes)  # lookups' outs are u32
                expected = "UNTOUCHED" if value is None else c_u32(value)
                self.check_out(index, op, what, what, expected)

    def _fault(self, op: Fault) -> None:
        if op.kind == "null_out":
            self.emit(f"libbpf_prog_type_by_name({c_string(op.name)}, NULL, NULL);")
        elif op.kind == "abort":
            self.emit("abort();")
        else:
            self.emit("for (;;)")
            self.emit("\tpause();")

    # -- object lifecycle ----------------------------------------------------

    def _lifecycle(self, index: int, op: Op, answer: Answer | None) -> None:
        if isinstance(op, Open):
            self._open(index, op, answer)
            return
        assert isinstance(op, ProgInfo | SetType | SetAutoload | Load | Attach | Close)
        skip = self._convention(op, answer)
        if skip is not None:
            self.emit(f"/* op {index}: {skip} without calling libbpf */")
            return
        obj = self.objects[op.obj.index]
        # the open's answer was not recorded: the conventions are applied at run time
        guarded = obj.is_open is None if isinstance(op, Load | Close) else obj.programs is None
        start = len(self.lines)
        prog = "prog"
        if isinstance(op, Load | Close):
            guard = str(op.obj)
        else:
            self.plan.used.add("prog_or_null")
            guard = f"(prog = prog_or_null({op.obj}, {op.prog}))"
            if not guarded:
                prog = self.prog_at(index, op, op.obj, op.prog)
        if isinstance(op, Close):
            self.close(index, op)
            obj.is_open = False
            obj.why = f"closed by op {index}"
        elif isinstance(op, Load):
            self.plan.needs_root = True
            self.check_rc(index, op, answer, f"bpf_object__load({op.obj})")
        elif isinstance(op, ProgInfo):
            self._prog_info(index, op, prog, answer, guarded)
        else:
            if isinstance(op, SetType):
                call = f"bpf_program__set_type({prog}, {c_u32(op.prog_type)})"
            elif isinstance(op, SetAutoload):
                call = f"bpf_program__set_autoload({prog}, {'true' if op.autoload else 'false'})"
            else:
                self.plan.needs_root = True
                self.plan.used.add("attach")
                call = f"attach_program({prog})"
            self.check_rc(index, op, answer, call)
        self._calls(index, op, answer)
        if guarded:
            if not isinstance(op, Load | Close):
                self.plan.used.add("prog_var")
            body = [f"\t{line}" for line in self.lines[start:]]
            self.lines[start:] = []
            self.emit(f"if ({guard}) {{ /* else the harness answers without calling libbpf */")
            self.lines += body
            self.emit("}")

    def _open(self, index: int, op: Open, answer: Answer | None) -> None:
        name = f"obj{len(self.objects)}"
        data = elf_bytes(op.obj)
        array = self.plan.elf[data][0]
        size = f"sizeof({array})" if data else "0"
        self.plan.used.add("open")
        self.check_rc(index, op, answer, f"open_object(&{name}, {array}, {size})")
        if answer is None:
            self.objects.append(ObjectState(name, None))
        else:
            count = answer.out[0] if answer.out else None
            opened = answer.rc == 0
            self.objects.append(ObjectState(name, opened, count if isinstance(count, int) else None,
                                        "" if opened else f"its open (op {index}) failed"))
            if isinstance(count, int):
                self.plan.used.add("count")
                self.check_out(index, op, "programs", f"count_programs({name})", str(count))
        self._calls(index, op, answer)

    def _convention(self, op: ProgInfo | SetType | SetAutoload | Load | Attach | Close,
                    answer: Answer | None) -> str | None:
        """Why the harness did not call libbpf for ``op`` (see module rules), or None."""
        if isinstance(op, Load | Attach) and answer is not None and answer.rc == NO_BPF:
            return ("bpf() was not permitted when this was recorded: the harness answers"
                    f" {c_rc(NO_BPF)}")
        ref = op.obj
        if not 0 <= ref.index < len(self.objects):
            raise BadArgumentError(f"{ref} names an Open that has not happened")
        obj = self.objects[ref.index]
        if obj.is_open is False:
            return f"{obj.name} is not open ({obj.why}): the harness answers {c_rc(NO_OBJECT)}"
        prog = getattr(op, "prog", None)
        if prog is not None and (prog < 0 or (obj.programs is not None
                                              and prog >= obj.programs)):
            has = "" if obj.programs is None else f" (it has {obj.programs})"
            return (f"{obj.name} has no program {prog}{has}: the harness answers"
                    f" {c_rc(NO_PROGRAM)}")
        return None

    def _prog_info(self, index: int, op: ProgInfo, prog: str, answer: Answer | None,
                   guarded: bool) -> None:
        """The getters, each checked when the answer has its value, else just called."""
        if not guarded:
            self.plan.used.add("prog_var")
            if prog != "prog":
                self.emit(f"prog = {prog};")
        outs = answer.out if answer is not None else (None,) * len(PROG_GETTERS)
        for (getter, out), value in zip(PROG_GETTERS.items(), outs, strict=True):
            if value is None:
                self.emit(f"{getter}(prog);")
            elif out.kind == "string":
                assert isinstance(value, bytes)
                self.check_getter(index, op, getter, True, c_string(value))
            else:
                assert isinstance(value, int)
                self.check_getter(index, op, getter, False, c_u32(value))

    def _calls(self, index: int, op: Op, answer: Answer | None) -> None:
        """Check (or, unanswered, forget) the callback calls an op made (record mode)."""
        if not self.plan.records_calls:
            return
        if answer is None:
            if isinstance(op, CALLING_OPS):
                self.plan.used.add("forget")
                self.emit("forget_calls();")
            return
        if not (isinstance(op, CALLING_OPS) or answer.calls):
            return
        self.check_calls(index, op, answer.calls)


def call_literal(call: CallbackCall) -> str:
    """A ``struct call`` initializer for ``call``."""
    return (f'{{ "{call.callback}", {call.registration}, {c_string(call.program)},'
            f" {c_string(call.section)}, {c_long(call.cookie)}, {c_int(call.ret)} }}")


def lookup_declarations(plan: Plan) -> Iterator[str]:
    """The lookups' out-parameters, each a variable named as its ``OutField``
    (``enum bpf_prog_type prog_type;``)."""
    for kind in (ProgTypeByName, AttachTypeByName):
        if kind in plan.lookups:
            for out in OP_SPECS[kind].out:
                yield f"enum bpf_{out.kind} {out.name};"


def _declarations(plan: Plan) -> Iterator[str]:
    yield from lookup_declarations(plan)
    if plan.handles:
        yield "int " + ", ".join(f"h{i}" for i in sorted(plan.handles)) + ";"
    if plan.opens:
        yield "struct bpf_object " + ", ".join(f"*obj{i}" for i in range(plan.opens)) + ";"
    if "prog_var" in plan.used:
        yield "struct bpf_program *prog;"


def _main(trace: Trace, plan: Plan) -> str:
    emitter = Emitter(plan)
    body = emitter.run(trace)
    emitter.lines = []
    for line in _declarations(plan):
        emitter.emit(line)
    if emitter.lines:
        emitter.emit()
    emitter.lines += body
    emitter.emit()
    if plan.checks_rc:
        emitter.emit('printf("%s: %d of %d facts hold\\n", failures ? "FAIL" : "PASS",'
                     " facts - failures, facts);")
        emitter.emit("return failures ? 1 : 0;")
    else:
        emitter.emit("return 0;")
    return "int main(void)\n{\n" + "\n".join(emitter.lines) + "\n}"


def emit_c(trace: Trace, *, title: str, summary: str) -> str:
    """The C reproducer of ``trace`` (see module rules)."""
    plan = plan_trace(trace)
    main = _main(trace, plan)  # first: it fills in ``plan.used``
    parts = [_header(trace, title, summary, plan), _includes(plan), elf_arrays(plan),
             _prelude(plan), callback_functions(plan), main]
    return "\n\n".join(p.strip("\n") for p in parts if p) + "\n"


__all__: Sequence[str] = ["c_string", "emit_c"]
