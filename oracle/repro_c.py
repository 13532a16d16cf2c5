"""Traces as standalone C reproducers: ``emit_c(trace, title=..., summary=...)``.

The program uses only libbpf's public API and builds with ``cc repro.c -lbpf``
(``-Wall -Werror`` clean); its shape follows libbpf's selftests
(``prog_tests/custom_sec_handlers.c``): flat, one call per line, one check
per fact.

Rules and invariants:
- Record ``i`` becomes "op i": the call, then one check per fact of its
  recorded answer: ``rc``, then each out-parameter.  A passing fact prints
  ``ok   op i CALL: ...``; a failing one
  ``FAIL op i CALL: rc expected -ESRCH (-3), got 0`` (``CALL`` is the C
  source of the call, via the preprocessor's ``#``).  ``main`` returns 1 if
  any fact failed, else 0.  Records without an answer are only called, so a
  trace without answers is a crash reproducer: it makes the calls and lets the
  sanitizer (or the kernel) speak.
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
- A callback is a static function returning the recorded value, one per
  (kind, value).  ``HandleRef(n)`` is the variable ``hn`` holding the n-th
  register's return.  Only what the program uses is emitted (``-Wall``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from oracle.errors import BadArgumentError
from oracle.ops import (
    INT_MAX,
    OPTS_STRUCT_SIZE,
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
from oracle.traces import ERRNO_NAME, Trace

UNTOUCHED: Final = 0xC0DEFACE
#: C names of each op kind's out-parameters, in ``Answer.out`` order
OUT_NAMES: Final[dict[type, tuple[str, ...]]] = {
    ProgTypeByName: ("prog_type", "attach_type"),
    AttachTypeByName: ("attach_type",),
}
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
class _Plan:
    """What the trace needs declared; filled in by one pass over the records."""

    handles: set[int] = field(default_factory=set)  # HandleRef indexes used
    callbacks: dict[tuple[str, int], str] = field(default_factory=dict)  # (kind, ret) -> name
    errnos: set[int] = field(default_factory=lambda: set(COMMON_ERRNOS))
    checks_rc: bool = False
    checks_out: bool = False
    lookups: set[type] = field(default_factory=set)
    standard_opts: bool = False
    raw_opts: bool = False
    faults: set[str] = field(default_factory=set)


def is_standard(opts: HandlerOpts) -> bool:
    return opts.sz == OPTS_STRUCT_SIZE and not opts.tail


def _plan(trace: Trace) -> _Plan:
    plan = _Plan()
    for record in trace.records:
        op, answer = record.op, record.answer
        if isinstance(op, Unregister) and isinstance(op.handler, HandleRef):
            plan.handles.add(op.handler.index)
        if isinstance(op, Register) and op.opts is not None:
            _plan_opts(plan, op.opts)
        if isinstance(op, ProgTypeByName | AttachTypeByName):
            plan.lookups.add(type(op))
        if isinstance(op, Fault):
            plan.faults.add(op.kind)
        elif answer is not None:
            plan.checks_rc = True
            plan.checks_out = plan.checks_out or bool(answer.out)
            if answer.rc < 0 and -answer.rc in ERRNO_NAME:
                plan.errnos.add(-answer.rc)
    return plan


def _plan_opts(plan: _Plan, opts: HandlerOpts) -> None:
    if is_standard(opts):
        plan.standard_opts = True
    else:
        plan.raw_opts = True
    for kind, short, _, _ in CALLBACK_KINDS:
        cb: Callback | None = getattr(opts, kind)
        if cb is not None:
            plan.callbacks[(kind, cb.ret)] = f"{short}_ret_{_ident(cb.ret)}"


# ---------------------------------------------------------------------------
# the program's parts


def _header(trace: Trace, title: str, summary: str, plan: _Plan) -> str:
    h = trace.header
    info = h.libbpf
    build = f"{info.variant} build" if info.variant not in ("system", "path") else info.variant
    lines = [comment_text(title), ""]
    lines += _wrap(comment_text(summary)) or ["(no summary)"]
    lines += [""]
    lines += _wrap(
        f"Recorded against libbpf {info.version} ({build})"
        + (f", sha256 {info.so_sha256}" if info.so_sha256 else "")
        + (f", {comment_text(info.path)}" if info.path else "")
        + f"; trace origin {h.origin}"
        + (f", seed {h.seed}" if h.seed is not None else "")
        + f", created {h.created} by libbpf-sec-oracle {h.oracle_version}.")
    if plan.checks_rc:
        lines += ["", "Each checked fact prints \"ok\" or \"FAIL ... expected X, got Y\";",
                  "the exit status is 1 if any fact failed, 0 otherwise."]
    else:
        lines += ["", "No answers were recorded: this program only makes the calls (a crash",
                  "reproducer: run it against the build that crashed)."]
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


def _wrap(text: str) -> list[str]:
    """Comment lines of at most 76 columns; paths and hashes are never split."""
    return textwrap.wrap(text, 76, break_long_words=False, break_on_hyphens=False)


def _includes(plan: _Plan) -> str:
    names = ["errno.h", "stdio.h"]
    if "abort" in plan.faults:
        names.append("stdlib.h")
    if plan.raw_opts:
        names.append("string.h")
    if "hang" in plan.faults:
        names.append("unistd.h")
    return "\n".join(f"#include <{n}>" for n in sorted(names)) + "\n#include <bpf/libbpf.h>"


_RC_CHECK: Final = r"""static int facts, failures;
static const char *last_call;

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

_OUT_CHECK: Final = r"""
/* out-parameters hold this before each lookup: still there means untouched */
#define UNTOUCHED 0xC0DEFACEu

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

_PUT: Final = r"""
/* store VAL's bytes at OFF of BUF: opts laid out exactly as recorded */
#define PUT(buf, off, val) do { __typeof__(val) v_ = (val); \
	memcpy((buf) + (off), &v_, sizeof(v_)); } while (0)"""


def _prelude(plan: _Plan) -> str:
    parts = []
    if plan.checks_rc:
        names = ",\n".join(f'\t\t{{ {ERRNO_NAME[e]}, "{ERRNO_NAME[e]}" }}'
                           for e in sorted(plan.errnos))
        parts.append(_RC_CHECK % names)
    if plan.checks_out:
        parts.append(_OUT_CHECK)
    if plan.raw_opts:
        parts.append(_PUT)
    if plan.standard_opts:
        parts.append("\n_Static_assert(sizeof(struct libbpf_prog_handler_opts) == 40,\n"
                     '\t       "the recorded opts are the 40-byte struct of libbpf 1.x");')
    return "\n".join(parts)


def _callbacks(plan: _Plan) -> str:
    signature = {kind: params for kind, _, _, params in CALLBACK_KINDS}
    return "\n\n".join(
        f"static int {name}({signature[kind]})\n{{\n\treturn {c_int(ret)};\n}}"
        for (kind, ret), name in sorted(plan.callbacks.items(), key=lambda kv: kv[1])
    )


# ---------------------------------------------------------------------------
# main()


@dataclass
class _Emitter:
    plan: _Plan
    registers: int = 0
    lines: list[str] = field(default_factory=list)

    def emit(self, line: str = "") -> None:
        self.lines.append(f"\t{line}" if line else "")

    def record(self, index: int, op: Op, answer: Answer | None) -> None:
        if isinstance(op, Register):
            self._register(index, op, answer)
        elif isinstance(op, Unregister):
            self._checked(index, answer, f"libbpf_unregister_prog_handler({_handler(op)})")
        elif isinstance(op, ProgTypeByName | AttachTypeByName):
            self._lookup(index, op, answer)
        elif isinstance(op, Fault):
            self._fault(op)
        else:
            raise BadArgumentError(f"no C form for op {op!r}")

    def _checked(self, index: int, answer: Answer | None, call: str, target: str = "") -> None:
        assign = f"{target} = " if target else ""
        if answer is None:
            self.emit(f"{assign}{call};")
        else:
            self.emit(f"{assign}EXPECT_RC({index}, {c_rc(answer.rc)}, {call});")

    def _register(self, index: int, op: Register, answer: Answer | None) -> None:
        handle = self.registers
        self.registers += 1
        opts = "NULL"
        if op.opts is not None:
            opts = self._opts(index, op.opts)
        call = (f"libbpf_register_prog_handler({c_string(op.sec)}, {c_u32(op.prog_type)},"
                f" {c_u32(op.exp_attach_type)}, {opts})")
        self._checked(index, answer, call, f"h{handle}" if handle in self.plan.handles else "")

    def _opts(self, index: int, opts: HandlerOpts) -> str:
        name = f"opts{index}"
        callbacks = [(kind, self.plan.callbacks[(kind, cb.ret)], ctype)
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
        self._checked(index, answer, f"{func}({args})")
        if answer is not None:
            for what, value in zip(outs, answer.out, strict=True):
                assert not isinstance(value, bytes)  # lookups' outs are u32
                expected = "UNTOUCHED" if value is None else c_u32(value)
                self.emit(f'expect_out({index}, "{what}", {what}, {expected});')

    def _fault(self, op: Fault) -> None:
        if op.kind == "null_out":
            self.emit(f"libbpf_prog_type_by_name({c_string(op.name)}, NULL, NULL);")
        elif op.kind == "abort":
            self.emit("abort();")
        else:
            self.emit("for (;;)")
            self.emit("\tpause();")


def _handler(op: Unregister) -> str:
    return str(op.handler) if isinstance(op.handler, HandleRef) else c_int(op.handler)


def _declarations(plan: _Plan) -> Iterator[str]:
    if ProgTypeByName in plan.lookups:
        yield "enum bpf_prog_type prog_type;"
    if plan.lookups:
        yield "enum bpf_attach_type attach_type;"
    if plan.handles:
        yield "int " + ", ".join(f"h{i}" for i in sorted(plan.handles)) + ";"


def _main(trace: Trace, plan: _Plan) -> str:
    emitter = _Emitter(plan)
    for line in _declarations(plan):
        emitter.emit(line)
    if emitter.lines:
        emitter.emit()
    for index, record in enumerate(trace.records):
        emitter.record(index, record.op, record.answer)
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
    plan = _plan(trace)
    parts = [_header(trace, title, summary, plan), _includes(plan), _prelude(plan),
             _callbacks(plan), _main(trace, plan)]
    return "\n\n".join(p.strip("\n") for p in parts if p) + "\n"


__all__: Sequence[str] = ["c_string", "emit_c"]
