"""Confirming a finding past its fresh replay: a crash seen by a sanitizer, and the C
reproducer compiled and run against the library.

Rules:
- Twins (``twin``): the same library in another variant.  A release
  ``VERSION`` and ``VERSION+asan`` are twins, a tree ``DIR`` and ``DIR+asan``,
  a ``PATH`` .so and ``DIR+asan`` when ``--source DIR`` named its tree, the
  system libbpf and its Debian release ``+asan``.  A twin that cannot be had
  (no source, a build that fails) is a reason, never an error of the run.
- A crash found on a plain build is run again, minimal case as it is, on a
  fresh state of its ASan twin (``on_sanitizer``): the finding carries what
  that build did (sanitizer kind and frames, or that it did not crash).
- ``run_repro`` compiles ``repro.c`` with ``cc`` against libbpf-dev's headers
  and runs it with ``LD_LIBRARY_PATH`` at the build's directory (the ASan
  runtime preloaded for a sanitizer build), under ``REPRO_TIMEOUT``.  It
  *reproduces* when it fails: a non-zero exit or a signal (a divergence's
  repro exits 1 on its first wrong fact; a crash kills it).  For a finding on
  a sanitizer build the plain twin is run too, when it is already built, so
  the finding says what a plain build does.  Findings write what these runs
  did into repro.c's header, summary.md and finding.json (``ReproRun``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from oracle import ccompile
from oracle.environment import Environment
from oracle.errors import OracleError
from oracle.exits import describe_exit
from oracle.libbpf.targets import Target, asan_runtime, resolve
from oracle.libbpf.worker import CrashEvent, Worker
from oracle.ops import Op
from oracle.traces import LibbpfInfo

#: seconds a reproducer may run (a hang is a reproduction too: it is killed)
REPRO_TIMEOUT: Final = 60.0
COMPILE_TIMEOUT: Final = 120.0


def twin(env: Environment, variant: str) -> str | None:
    """The target spec of ``env``'s library in ``variant`` (module rules), or None."""
    target = env.target
    suffix = "" if variant == "plain" else f"+{variant}"
    if target.kind == "tree" and target.tree is not None:
        return f"{target.tree}{suffix}"
    if target.kind == "release" and target.version is not None:
        return f"{target.version}{suffix}"
    if target.kind == "path" and env.source is not None and variant != "plain":
        return f"{env.source}{suffix}"
    if target.kind == "system" and variant != "plain":
        return f"{env.version}{suffix}"
    return None


@dataclass(frozen=True)
class SanitizerRun:
    """What the ASan twin did with a plain build's crashing case."""

    target: str | None
    crashed: bool = False
    kind: str | None = None
    sanitizer: str | None = None
    frames: tuple[str, ...] = ()
    reason: str | None = None  # why it was not run

    def as_report(self) -> dict[str, Any]:
        return asdict(self) | {"frames": list(self.frames[:8])}


def on_sanitizer(env: Environment, ops: Sequence[Op], timeout: float) -> SanitizerRun:
    """``ops`` on a fresh state of ``env``'s ASan twin (module rules)."""
    spec = twin(env, "asan")
    if spec is None:
        return SanitizerRun(None, reason=f"no sanitizer build of {env.target.spec} is known"
                            " (a .so needs --source DIR)")
    try:
        target = resolve(spec)
        with Worker(target, timeout=timeout, log=False) as worker:
            crash: CrashEvent | None = worker.run_fresh(list(ops)).crash
    except OracleError as exc:
        return SanitizerRun(spec, reason=str(exc).splitlines()[0])
    if crash is None:
        return SanitizerRun(spec)
    return SanitizerRun(spec, True, crash.kind, crash.sanitizer, tuple(crash.frames))


@dataclass(frozen=True)
class ReproRun:
    """``repro.c`` compiled and run against one build."""

    build: str  # "libbpf 1.7.0 (asan) at PATH"
    reproduces: bool | None  # None: not run (``detail`` says why)
    status: int | None = None  # exit status; negative: killed by that signal
    detail: str = ""  # its last line of output, or why it was not run

    def sentence(self) -> str:
        if self.reproduces is None:
            return f"repro.c was not run against {self.build}: {self.detail}"
        how = describe_exit(self.status)
        verb = "reproduces" if self.reproduces else "does NOT reproduce"
        return f"repro.c {verb} on {self.build} ({how}; {self.detail or 'no output'})"

    def as_report(self) -> dict[str, Any]:
        return asdict(self)


def describe_build(libbpf: LibbpfInfo) -> str:
    return f"libbpf {libbpf.version} ({libbpf.variant}) at {libbpf.path}"


def run_repro(source: Path, libbpf: LibbpfInfo) -> ReproRun:
    """Compile ``source`` and run it against ``libbpf`` (module rules)."""
    build = describe_build(libbpf)
    if libbpf.path is None:
        return ReproRun(build, None, detail="the build's path is unknown")
    with tempfile.TemporaryDirectory(prefix="sec-oracle-repro-") as work:
        binary = Path(work) / "repro"
        try:
            compiler = ccompile.require(("cc", "clang"))
            ccompile.compile_c([compiler, "-w", "-o", str(binary), str(source), "-lbpf"],
                               "compiling repro.c", timeout=COMPILE_TIMEOUT)
        except OracleError as exc:
            return ReproRun(build, None, detail=str(exc))
        env = {**os.environ, "LD_LIBRARY_PATH": str(Path(libbpf.path).parent)}
        if libbpf.variant in ("asan", "fuzz"):
            with contextlib.suppress(OracleError):
                env["LD_PRELOAD"] = str(asan_runtime())
        try:
            ran = subprocess.run([str(binary)], capture_output=True, text=True,
                                 errors="replace", timeout=REPRO_TIMEOUT, env=env,
                                 stdin=subprocess.DEVNULL, cwd=work, check=False)
        except subprocess.TimeoutExpired:
            return ReproRun(build, True, -int(signal.SIGKILL),
                            f"hung: killed after {REPRO_TIMEOUT:.0f} s")
        except OSError as exc:
            return ReproRun(build, None, detail=f"cannot run it: {exc.strerror}")
    lines = [line.strip() for line in (ran.stdout + ran.stderr).splitlines() if line.strip()]
    sanitizer = [line for line in lines if "ERROR: AddressSanitizer" in line
                 or "runtime error:" in line]
    verdict = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    detail = (sanitizer[:1] or verdict[-1:] or lines[-1:] or [""])[0]
    return ReproRun(build, ran.returncode != 0, ran.returncode, detail[:200])


def plain_twin_info(libbpf: LibbpfInfo, target: Target | None) -> LibbpfInfo | None:
    """The plain twin of a sanitizer build, as a ``LibbpfInfo``, if it is built already."""
    if target is None or libbpf.variant == "plain":
        return None
    spec = (str(target.tree) if target.kind == "tree" and target.tree is not None
            else target.version if target.kind == "release" else None)
    if spec is None:
        return None
    try:
        plain = resolve(spec, build=False)
    except OracleError:
        return None
    return LibbpfInfo(libbpf.version, "plain", None, str(plain.path))
