"""A cffi (ABI mode) binding of the libbpf calls this project makes.

Rules and invariants:
- ABI mode: ``ffi.dlopen(path)`` of any libbpf ``.so`` (system, a release
  build, a sanitizer build); nothing is compiled at run time.  Measured with
  ``oracle.libbpf.bench.bench_call_modes``, per ``libbpf_prog_type_by_name(
  "kprobe/foo")`` call: ABI ~310 ns, API mode (a compiled shim that dlopen()s
  the chosen .so and calls through pointers) ~190 ns.  One op through
  ``child.execute`` costs ~1.25 us and ~2.5 us with its ``OpResult``, so the
  ~120 ns difference is about 5% of an op: not worth a C compiler at run time.
- x86-64 / LP64 only: the declarations are written by hand for that ABI
  (``size_t``/``long`` 8 bytes, enums as ``unsigned int``) and the print
  callback's ``va_list`` is declared ``void *`` (on x86-64 a ``va_list``
  parameter is a pointer to ``__va_list_tag``) and formatted with libc's
  ``vsnprintf``.  ``Libbpf`` refuses other machines.
- Strings passed to libbpf are ``oracle.ops.Name`` values: ``bytes`` without
  NUL, ``None`` for NULL.  Enum arguments are the u32 the C ABI carries.
- ``struct libbpf_prog_handler_opts`` is passed as the raw bytes of
  ``HandlerOpts.to_bytes(pointers)``: exactly what a C caller lays out,
  including ``sz`` and ``tail``, so ``OPTS_VALID``/``OPTS_GET`` see the same.
- Out-parameters start as a canary; an out-parameter is reported ``None``
  ("untouched") iff it still holds the canary.  When a written value could
  equal the canary, the call is repeated with a second canary (lookups have no
  side effect on libbpf's state) and only slots holding their canary both
  times are ``None``; the repeat's log lines are dropped.  A lookup writes a
  section definition's types: built-in ones are small enum values, so a
  written value can equal the canary only once some handler was registered
  with it (``Libbpf.canary_registered``, per process: every ``Libbpf`` of the
  process and its forks share libbpf's registry).  Until then a canary is
  untouched and there is no repeat (a miss costs libbpf ~10 us: it formats
  every section name even with the log off).
- Log capture: one ``libbpf_set_print`` callback per loaded library appends a
  ``LogLine`` (level, text without its final newline) to ``Libbpf.log``, for
  every level including DEBUG.  The caller clears ``log`` between calls.
  ``Libbpf(path, log=False)`` sets no callback at all (libbpf then prints
  nothing): chained campaign batches compare answers only.
- Handler callbacks are ``ffi.callback``s made per registration; each call
  appends a ``CallbackCall`` to ``Libbpf.calls`` and returns ``Callback.ret``.
  They are kept alive for the life of the ``Libbpf`` object (libbpf may call
  them as long as an object opened while they were registered exists, and
  1.1.2 can even keep a stale copy), i.e. for the worker process's life.
- libbpf's handler registry and print callback are process-global: two
  ``Libbpf`` objects for the same ``.so`` share them (the last one's print
  callback wins).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cffi import FFI

from oracle.errors import LibbpfError
from oracle.ops import Callback, CallbackCall, HandlerOpts, Name

CDEF: Final = """
struct bpf_object;
struct bpf_program;
struct bpf_link;
struct bpf_prog_load_opts;

typedef int (*libbpf_print_fn_t)(int level, const char *format, void *ap);
typedef int (*prog_setup_fn_t)(struct bpf_program *prog, long cookie);
typedef int (*prog_prepare_load_fn_t)(struct bpf_program *prog,
                                      struct bpf_prog_load_opts *opts, long cookie);
typedef int (*prog_attach_fn_t)(const struct bpf_program *prog, long cookie,
                                struct bpf_link **link);

int libbpf_register_prog_handler(const char *sec, unsigned int prog_type,
                                 unsigned int exp_attach_type, const void *opts);
int libbpf_unregister_prog_handler(int handler_id);
int libbpf_prog_type_by_name(const char *name, unsigned int *prog_type,
                             unsigned int *expected_attach_type);
int libbpf_attach_type_by_name(const char *name, unsigned int *attach_type);
libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn);
const char *libbpf_version_string(void);
uint32_t libbpf_major_version(void);
uint32_t libbpf_minor_version(void);
long libbpf_get_error(const void *ptr);

struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz,
                                        const void *opts);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                             struct bpf_program *prog);
const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
unsigned int bpf_program__type(const struct bpf_program *prog);
unsigned int bpf_program__expected_attach_type(const struct bpf_program *prog);
bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_program__set_type(struct bpf_program *prog, unsigned int type);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
int bpf_object__load(struct bpf_object *obj);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
int bpf_link__destroy(struct bpf_link *link);
void bpf_object__close(struct bpf_object *obj);

int vsnprintf(char *str, size_t size, const char *format, void *ap);
void abort(void);
"""

ffi: Final[Any] = FFI()
ffi.cdef(CDEF)

LOG_BUFFER_SIZE: Final = 64 * 1024
CANARIES: Final = (0xC0DEFACE, 0x5EC0FFEE)
U32: Final = 0xFFFFFFFF
CALLBACK_KINDS: Final = ("prog_setup_fn", "prog_prepare_load_fn", "prog_attach_fn")
CALLBACK_TYPES: Final = {
    "prog_setup_fn": "prog_setup_fn_t",
    "prog_prepare_load_fn": "prog_prepare_load_fn_t",
    "prog_attach_fn": "prog_attach_fn_t",
}
#: the same, parsed once (cffi parses a type string on every call that names one)
CALLBACK_CTYPES: Final = {kind: ffi.typeof(name) for kind, name in CALLBACK_TYPES.items()}
UINTPTR: Final = ffi.typeof("uintptr_t")
#: what a callback returns when Python itself fails inside it (never expected)
CALLBACK_ERROR_RET: Final = -22


@dataclass(frozen=True, slots=True)
class LogLine:
    """One message libbpf printed: ``level`` 0 WARN, 1 INFO, 2 DEBUG."""

    level: int
    text: str


def c_name(value: Name) -> Any:
    """``bytes`` as a NUL-terminated C string argument, ``None`` as NULL."""
    return ffi.NULL if value is None else value


def untouched(first: tuple[int, ...], second: tuple[int, ...] | None) -> tuple[int | None, ...]:
    """Out-parameters with ``None`` for slots that kept their canary (see module rules)."""
    if second is None:
        return tuple(first)
    return tuple(
        None if a == CANARIES[0] and b == CANARIES[1] else (b if a == CANARIES[0] else a)
        for a, b in zip(first, second, strict=True)
    )


class Libbpf:
    """One loaded libbpf ``.so`` and the capture state of calls made through it."""

    #: a handler was registered in this process with a type equal to the first canary
    canary_registered: bool = False

    def __init__(self, path: Path | str, *, log: bool = True) -> None:
        if platform.machine() != "x86_64":
            raise LibbpfError(f"the libbpf binding is written for x86-64, not {platform.machine()}")
        self.path = Path(path)
        try:
            self.lib: Any = ffi.dlopen(str(self.path))
        except OSError as exc:
            raise LibbpfError(f"cannot load libbpf {self.path}: {exc}") from exc
        self.libc: Any = ffi.dlopen(None)
        self.log: list[LogLine] = []
        self.calls: list[CallbackCall] = []
        self._keep: list[Any] = []
        self._objects: dict[int, Any] = {}
        self._outs: Any = ffi.new("unsigned int[2]")
        self._outs1: Any = self._outs + 1
        self._logbuf: Any = ffi.new("char[]", LOG_BUFFER_SIZE)
        self._print: Any = ffi.callback("libbpf_print_fn_t", self._on_print)
        # log=False: libbpf formats nothing at all (its print hook is NULL)
        self.lib.libbpf_set_print(self._print if log else ffi.NULL)

    # -- version -------------------------------------------------------------

    def version(self) -> str:
        """``libbpf_version_string()``, e.g. ``"v1.7"``."""
        return str(ffi.string(self.lib.libbpf_version_string()).decode())

    def major_minor(self) -> tuple[int, int]:
        """``(libbpf_major_version(), libbpf_minor_version())``."""
        return int(self.lib.libbpf_major_version()), int(self.lib.libbpf_minor_version())

    # -- logging -------------------------------------------------------------

    def _on_print(self, level: int, fmt: Any, ap: Any) -> int:
        n = self.libc.vsnprintf(self._logbuf, LOG_BUFFER_SIZE, fmt, ap)
        text = ffi.string(self._logbuf).decode("utf-8", "backslashreplace")
        if n >= LOG_BUFFER_SIZE:
            text += "...[truncated]"
        self.log.append(LogLine(level, text[:-1] if text.endswith("\n") else text))
        return 0

    # -- the handler registry ------------------------------------------------

    def register(
        self,
        sec: Name,
        prog_type: int,
        exp_attach_type: int,
        opts: HandlerOpts | None,
        registration: int,
    ) -> int:
        """``libbpf_register_prog_handler`` with ``opts`` laid out as raw bytes."""
        raw = ffi.NULL if opts is None else self._opts_buffer(opts, registration)
        if CANARIES[0] in (prog_type & U32, exp_attach_type & U32):
            Libbpf.canary_registered = True  # before the call: a crash mid-call keeps it
        return int(
            self.lib.libbpf_register_prog_handler(c_name(sec), prog_type, exp_attach_type, raw)
        )

    def _opts_buffer(self, opts: HandlerOpts, registration: int) -> Any:
        setup, prepare, attach = opts.prog_setup_fn, opts.prog_prepare_load_fn, opts.prog_attach_fn
        address = self._callback_address
        pointers = (
            0 if setup is None else address("prog_setup_fn", setup, registration),
            0 if prepare is None else address("prog_prepare_load_fn", prepare, registration),
            0 if attach is None else address("prog_attach_fn", attach, registration),
        )
        return ffi.from_buffer(opts.to_bytes(pointers))

    def callback_mark(self) -> int:
        """A mark for ``drop_callbacks``: how many callbacks are alive now."""
        return len(self._keep)

    def drop_callbacks(self, mark: int) -> None:
        """Release the callbacks made since ``mark``.

        Only safe once libbpf can no longer call them: their handlers are
        unregistered and every object opened while they were registered is
        closed (a long-running fuzzer would otherwise keep every one alive).
        """
        del self._keep[mark:]

    def _callback_address(self, kind: str, cb: Callback, registration: int) -> int:
        fn = self._make_callback(kind, cb, registration)
        self._keep.append(fn)
        return int(ffi.cast(UINTPTR, fn))

    def _make_callback(self, kind: str, cb: Callback, registration: int) -> Any:
        def record(prog: Any, cookie: int) -> int:
            self.calls.append(
                CallbackCall(
                    kind,
                    registration,
                    self.prog_name(prog),
                    self.prog_section(prog),
                    int(cookie),
                    cb.ret,
                )
            )
            return cb.ret

        ctype = CALLBACK_CTYPES[kind]
        if kind == "prog_setup_fn":
            return ffi.callback(ctype, record, error=CALLBACK_ERROR_RET)
        if kind == "prog_prepare_load_fn":
            return ffi.callback(
                ctype, lambda prog, _o, cookie: record(prog, cookie), error=CALLBACK_ERROR_RET
            )
        return ffi.callback(
            ctype, lambda prog, cookie, _l: record(prog, cookie), error=CALLBACK_ERROR_RET
        )

    def unregister(self, handler_id: int) -> int:
        """``libbpf_unregister_prog_handler(handler_id)``."""
        return int(self.lib.libbpf_unregister_prog_handler(handler_id))

    # -- lookups ---------------------------------------------------------------

    def prog_type_by_name(self, name: Name) -> tuple[int, tuple[int | None, ...]]:
        """``libbpf_prog_type_by_name(name, &prog_type, &expected_attach_type)``."""
        return self._lookup(self.lib.libbpf_prog_type_by_name, name, 2)

    def attach_type_by_name(self, name: Name) -> tuple[int, tuple[int | None, ...]]:
        """``libbpf_attach_type_by_name(name, &attach_type)``."""
        return self._lookup(self.lib.libbpf_attach_type_by_name, name, 1)

    def _lookup(self, fn: Any, name: Name, arity: int) -> tuple[int, tuple[int | None, ...]]:
        rc, first = self._call_with_canary(fn, name, arity, CANARIES[0])
        if CANARIES[0] not in first:
            return rc, first
        if not Libbpf.canary_registered:  # nothing can have written it (module rules)
            return rc, tuple(None if v == CANARIES[0] else v for v in first)
        kept = len(self.log)
        _, second = self._call_with_canary(fn, name, arity, CANARIES[1])
        del self.log[kept:]
        return rc, untouched(first, second)

    def _call_with_canary(
        self, fn: Any, name: Name, arity: int, canary: int
    ) -> tuple[int, tuple[int, ...]]:
        outs = self._outs
        outs[0] = outs[1] = canary
        if arity == 2:
            rc = fn(c_name(name), outs, self._outs1)
            return int(rc), (outs[0], outs[1])
        rc = fn(c_name(name), outs)
        return int(rc), (outs[0],)

    def prog_type_by_name_null_outs(self, name: Name) -> int:
        """``libbpf_prog_type_by_name(name, NULL, NULL)``: the ``Fault("null_out")`` call."""
        return int(self.lib.libbpf_prog_type_by_name(c_name(name), ffi.NULL, ffi.NULL))

    def abort(self) -> None:
        """libc ``abort()``: the ``Fault("abort")`` call."""
        self.libc.abort()

    # -- object lifecycle (thin wrappers; pointers are cffi cdata) --------------

    def open_mem(self, data: bytes) -> tuple[Any, int]:
        """``bpf_object__open_mem(data, len, NULL)``: ``(obj or NULL, libbpf_get_error)``."""
        buf = ffi.new("char[]", data)
        obj = self.lib.bpf_object__open_mem(buf, len(data), ffi.NULL)
        err = int(self.lib.libbpf_get_error(obj))
        if err or obj == ffi.NULL:
            return ffi.NULL, err or -1
        self._objects[int(ffi.cast("uintptr_t", obj))] = buf  # libbpf reads it until close
        return obj, 0

    def programs(self, obj: Any) -> list[Any]:
        """Every program of ``obj``, in ``bpf_object__next_program`` order."""
        progs: list[Any] = []
        prog = self.lib.bpf_object__next_program(obj, ffi.NULL)
        while prog != ffi.NULL:
            progs.append(prog)
            prog = self.lib.bpf_object__next_program(obj, prog)
        return progs

    def prog_name(self, prog: Any) -> bytes:
        """``bpf_program__name(prog)``."""
        return bytes(ffi.string(self.lib.bpf_program__name(prog)))

    def prog_section(self, prog: Any) -> bytes:
        """``bpf_program__section_name(prog)``."""
        return bytes(ffi.string(self.lib.bpf_program__section_name(prog)))

    def prog_type(self, prog: Any) -> int:
        """``bpf_program__type(prog)``."""
        return int(self.lib.bpf_program__type(prog))

    def prog_expected_attach_type(self, prog: Any) -> int:
        """``bpf_program__expected_attach_type(prog)``."""
        return int(self.lib.bpf_program__expected_attach_type(prog))

    def prog_autoload(self, prog: Any) -> bool:
        """``bpf_program__autoload(prog)``."""
        return bool(self.lib.bpf_program__autoload(prog))

    def prog_set_type(self, prog: Any, prog_type: int) -> int:
        """``bpf_program__set_type(prog, prog_type)``."""
        return int(self.lib.bpf_program__set_type(prog, prog_type))

    def prog_set_autoload(self, prog: Any, autoload: bool) -> int:
        """``bpf_program__set_autoload(prog, autoload)``."""
        return int(self.lib.bpf_program__set_autoload(prog, autoload))

    def load(self, obj: Any) -> int:
        """``bpf_object__load(obj)``."""
        return int(self.lib.bpf_object__load(obj))

    def attach(self, prog: Any) -> tuple[Any, int]:
        """``bpf_program__attach(prog)``: ``(link or NULL, libbpf_get_error)``."""
        link = self.lib.bpf_program__attach(prog)
        err = int(self.lib.libbpf_get_error(link))
        return (ffi.NULL, err or -1) if err or link == ffi.NULL else (link, 0)

    def link_destroy(self, link: Any) -> int:
        """``bpf_link__destroy(link)``."""
        return int(self.lib.bpf_link__destroy(link))

    def close(self, obj: Any) -> None:
        """``bpf_object__close(obj)``; releases the ELF buffer kept for it."""
        self.lib.bpf_object__close(obj)
        self._objects.pop(int(ffi.cast("uintptr_t", obj)), None)
