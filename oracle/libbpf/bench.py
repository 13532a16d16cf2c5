"""Throughput of the libbpf worker against in-process calls, and ABI vs API cffi.

Rules:
- ``bench_worker(target, n_ops, batch)`` runs the same op list (``bench_ops``)
  twice in one call: through a ``Worker`` in batches of ``batch`` ops, and
  through ``run_inprocess`` in a fresh child process with the target's
  environment (so sanitizer builds work and the caller's libbpf state is not
  touched), timed inside that child.  Worker start-up is excluded from the
  timing and reported separately.  The goal is ``ratio >= 0.6`` (the worker's
  overhead costs at most 40% of in-process throughput).
- ``bench_ops`` is a fixed mix: known and unknown names (the unknown one makes
  libbpf log two lines), custom handlers registered and unregistered.  It
  keeps one registration alive throughout, because on libbpf 1.1.2 emptying
  the registry corrupts the heap.
- ``bench_call_modes`` is the measurement behind the binding's ABI-mode choice:
  ns per ``libbpf_prog_type_by_name`` call in ABI mode and in API mode through
  a compiled dlopen() shim (needs a C compiler; built in a temp dir).
- Nothing here asserts: these are numbers for humans and ``sec-oracle bench``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Final

from oracle.libbpf.child import run_inprocess
from oracle.libbpf.worker import TargetLike, Worker, child_env
from oracle.ops import (
    AttachTypeByName,
    HandleRef,
    HandlerOpts,
    Op,
    ProgTypeByName,
    Register,
    Unregister,
)

BPF_PROG_TYPE_KPROBE: Final = 2


def bench_ops(n_ops: int) -> list[Op]:
    """``n_ops`` ops of the fixed benchmark mix (see module rules)."""
    ops: list[Op] = [Register(b"bench_keep/", BPF_PROG_TYPE_KPROBE, 0, HandlerOpts(cookie=1))]
    registers = 1
    while len(ops) < n_ops:
        ops += [
            ProgTypeByName(b"kprobe/foo"),
            AttachTypeByName(b"cgroup/connect4"),
            ProgTypeByName(b"bench_keep/x"),
            ProgTypeByName(b"no_such_section"),
            Register(b"bench_tmp+", BPF_PROG_TYPE_KPROBE, 0),
            ProgTypeByName(b"bench_tmp/y"),
            Unregister(HandleRef(registers)),
            AttachTypeByName(b"xdp"),
        ]
        registers += 1
    return ops[:n_ops]  # a cut never separates an Unregister from an earlier Register


def chunks(ops: list[Op], size: int) -> list[list[Op]]:
    """``ops`` cut into consecutive lists of ``size``."""
    return [ops[i : i + size] for i in range(0, len(ops), size)]


def time_worker(target: TargetLike, ops: list[Op], batch: int) -> tuple[float, float]:
    """``(start-up seconds, run seconds)`` of ``ops`` through one fresh worker."""
    with Worker(target) as worker:
        t0 = time.perf_counter()
        worker.start()
        t1 = time.perf_counter()
        for part in chunks(ops, batch):
            result = worker.run(part)
            if result.crash is not None:
                raise RuntimeError(
                    f"benchmark worker died: {result.crash.kind} {result.crash.message}"
                )
        return t1 - t0, time.perf_counter() - t1


def time_inprocess(path: str, n_ops: int, batch: int) -> float:
    """Seconds for ``bench_ops(n_ops)`` through ``run_inprocess`` in this process."""
    from oracle.libbpf.binding import Libbpf
    from oracle.libbpf.child import Session

    session = Session(Libbpf(path))
    parts = chunks(bench_ops(n_ops), batch)
    t0 = time.perf_counter()
    for part in parts:
        run_inprocess(session, part)
    return time.perf_counter() - t0


def time_inprocess_child(target: TargetLike, n_ops: int, batch: int) -> float:
    """``time_inprocess`` in a child process started with the target's environment."""
    argv = [
        sys.executable,
        "-m",
        "oracle.libbpf.bench",
        "inprocess",
        str(target.path),
        str(n_ops),
        str(batch),
    ]
    done = subprocess.run(argv, env=child_env(target), capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def bench_worker(target: TargetLike, n_ops: int = 100_000, batch: int = 1000) -> dict[str, Any]:
    """Worker vs in-process throughput for the same ops (see module rules)."""
    ops = bench_ops(n_ops)
    startup, worker_s = time_worker(target, ops, batch)
    inprocess_s = time_inprocess_child(target, len(ops), batch)
    worker_rate, inprocess_rate = len(ops) / worker_s, len(ops) / inprocess_s
    return {
        "target": str(target.path),
        "n_ops": len(ops),
        "batch": batch,
        "worker_startup_s": round(startup, 4),
        "worker_s": round(worker_s, 4),
        "inprocess_s": round(inprocess_s, 4),
        "worker_ops_per_s": round(worker_rate),
        "inprocess_ops_per_s": round(inprocess_rate),
        "ratio": round(worker_rate / inprocess_rate, 3),
    }


# -- ABI vs API mode -------------------------------------------------------------

_SHIM_CDEF: Final = """
int shim_load(const char *path);
int w_prog_type_by_name(const char *name, unsigned int *t, unsigned int *a);
"""
_SHIM_SOURCE: Final = r"""
#include <dlfcn.h>
static int (*p_ptbn)(const char *, unsigned int *, unsigned int *);
static int shim_load(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return -1;
    p_ptbn = (int (*)(const char *, unsigned int *, unsigned int *))
        dlsym(h, "libbpf_prog_type_by_name");
    return p_ptbn ? 0 : -2;
}
static int w_prog_type_by_name(const char *n, unsigned int *t, unsigned int *a) {
    return p_ptbn(n, t, a);
}
"""


def _per_call_ns(fn: Any, outs: Any, name: bytes, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn(name, outs, outs + 1)
    return (time.perf_counter() - t0) / n * 1e9


def bench_call_modes(path: str, n: int = 200_000, name: bytes = b"kprobe/foo") -> dict[str, float]:
    """ns per ``libbpf_prog_type_by_name(name)`` call: ABI mode vs an API-mode dlopen shim."""
    import importlib

    from cffi import FFI

    from oracle.libbpf.binding import Libbpf, ffi

    abi = Libbpf(path)
    outs = ffi.new("unsigned int[2]")
    result = {"abi_ns": _per_call_ns(abi.lib.libbpf_prog_type_by_name, outs, name, n)}
    builder = FFI()
    builder.cdef(_SHIM_CDEF)
    with tempfile.TemporaryDirectory(prefix="sec-oracle-shim-") as tmp:
        module = f"_sec_oracle_shim_{os.getpid()}"
        builder.set_source(module, _SHIM_SOURCE, libraries=["dl"])
        builder.compile(tmpdir=tmp, verbose=False)
        sys.path.insert(0, tmp)
        try:
            shim = importlib.import_module(module)
        finally:
            sys.path.remove(tmp)
        if shim.lib.shim_load(path.encode()) != 0:
            raise RuntimeError(f"shim could not dlopen {path}")
        api_outs = shim.ffi.new("unsigned int[2]")
        result["api_ns"] = _per_call_ns(shim.lib.w_prog_type_by_name, api_outs, name, n)
    return {k: round(v, 1) for k, v in result.items()}


def main(argv: list[str]) -> int:
    """``python -m oracle.libbpf.bench inprocess PATH N BATCH`` (used by bench_worker),
    ``... modes PATH`` or ``... worker SPEC [N [BATCH]]`` for humans."""
    if argv[0] == "inprocess":
        print(json.dumps({"seconds": time_inprocess(argv[1], int(argv[2]), int(argv[3]))}))
    elif argv[0] == "modes":
        print(json.dumps(bench_call_modes(argv[1])))
    else:
        from oracle.libbpf.targets import resolve

        rest = [int(a) for a in argv[2:]]
        print(json.dumps(bench_worker(resolve(argv[1]), *rest)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
