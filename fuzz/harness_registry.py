"""atheris entry point: libbpf's handler registry and lookups, in process, against the oracle.

Usage::

    python fuzz/harness_registry.py --libbpf=1.7.0+fuzz [--lifecycle] [--allow-known]
        [--malloc-context=0] [--instrument=auto|yes|no] [libFuzzer flags] [CORPUS_DIR...]
    python fuzz/harness_registry.py --libbpf=system --replay FILE...   # no libFuzzer
    $OUT/harness_registry [libFuzzer flags] [CORPUS_DIR...]   # packaged: .clusterfuzzlite/build.sh

Our own flags are written ``--name=value``: libFuzzer ignores flags that start
with ``--`` and keeps them when it relaunches the fuzzer (``-fork``, ``-jobs``,
``-minimize_crash``), which it does through ``argv[0]``, so ``argv[0]`` is
"<interpreter> <absolute script path>" (libFuzzer runs it with system()).

Rules (per input, ``Harness.one_input``):
- decode the bytes into ops (``fuzz.decode``), keep what ``fuzz.checks.admissible``
  allows, compute the oracle's answers, then run the ops on libbpf with a
  fresh ``Session`` (``oracle.libbpf.child.execute``) and compare answer by
  answer; the first difference raises ``FuzzDivergence`` whose message starts
  with the divergence signature (libFuzzer saves the input as ``crash-*``).
- libbpf's registry is process-global, so after each input the harness closes
  the input's objects and unregisters everything it registered, in reverse.
  The oracle of the next input then starts from the same state: the anchor
  (when the policy has one) and the id counter libbpf has reached
  (``last_handler_id``, tracked from the ids libbpf returned).
- Inputs the model cannot answer (``NotModelledError``) are skipped.
- A sanitizer target needs atheris' ``asan_with_fuzzer.so`` preloaded: the
  script re-executes itself once with ``Target.env(host="atheris")`` (plus
  ``malloc_context_size``, 0 by default: allocation stacks are what make ASan
  slow for a Python host) when the preload is missing.
- Where libbpf is (``located_libbpf``): ``--libbpf=TARGET``, else
  ``$SEC_ORACLE_FUZZ_LIBBPF`` (a TARGET), else a ``libbpf.so.X.Y.Z`` (or
  ``libbpf.so.1``) next to the executable, i.e. in ``$OUT`` beside a packaged
  fuzzer, or in its bundle (``sys._MEIPASS``).  Never only this tool's cache.
- Packaged by PyInstaller (``FROZEN``, see ``.clusterfuzzlite/build.sh``): the
  wrapper script in ``$OUT`` preloads ``sanitizer_with_fuzzer.so`` (atheris'
  ``asan_with_fuzzer.so``), so there is no re-exec; a sanitizer target without
  a preload stops with a one-line message.  libFuzzer relaunches the package
  (``sys.executable``) and the preload is inherited.  Package data comes in
  with ``--add-data`` (the layout under ``sys._MEIPASS`` is the tree's).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz import checks
from fuzz.decode import decode
from oracle.campaign.compare import first_divergence
from oracle.campaign.runner import ANCHOR
from oracle.libbpf.binding import Libbpf, ffi
from oracle.libbpf.child import Session, execute
from oracle.libbpf.worker import merge_options
from oracle.model.objects import NotModelledError
from oracle.model.oracle import Oracle
from oracle.model.registry import RegisterCall
from oracle.model.versions import Profile, profile
from oracle.ops import Answer

SCRIPT: Final = Path(__file__).resolve()
#: packaged by PyInstaller: sys.executable is the package, not a Python
FROZEN: Final = bool(getattr(sys, "frozen", False))
#: a TARGET for the harness when --libbpf is not given
LIBBPF_ENV: Final = "SEC_ORACLE_FUZZ_LIBBPF"
#: set in the environment of the re-executed process, so it never loops
REEXEC_MARK: Final = "SEC_ORACLE_FUZZ_REEXEC"


class FuzzDivergence(Exception):
    """libbpf and the oracle disagree; the message starts with the signature."""


class Harness:
    """One process's libbpf, driven input by input (see module rules)."""

    def __init__(self, lib: Libbpf, pol: checks.Policy, *, lifecycle: bool = False,
                 bpf: bool = True, model: Profile | None = None) -> None:
        self.lib = lib
        self.policy = pol
        self.version = pol.version
        self.profile = model if model is not None else profile(pol.version)
        self.lifecycle = lifecycle
        self.bpf = bpf
        self.counter = 0  # libbpf's last_custom_sec_def_handler_id, as far as we know
        self.inputs = self.skipped = 0
        # no log capture: the harness compares answers only, and formatting every
        # DEBUG line libbpf prints costs ~12% of an input
        lib.lib.libbpf_set_print(ffi.NULL)
        if pol.anchor:
            assert ANCHOR.sec is not None
            rc = lib.register(ANCHOR.sec, ANCHOR.prog_type, ANCHOR.exp_attach_type, None, -1)
            if rc != checks.ANCHOR_ID:
                raise RuntimeError(f"the anchor got id {rc}: the process registered before")
            self.counter = rc
        # callbacks made for the registrations before this mark stay alive (see restore)
        self._keep_mark = lib.callback_mark()

    def model(self) -> Oracle:
        """An oracle in the state libbpf is in between inputs."""
        oracle = Oracle(self.profile, bpf=self.bpf)
        if self.policy.anchor:
            oracle.registry.last_handler_id = checks.ANCHOR_ID - 1
            oracle.registry.register(RegisterCall(ANCHOR.sec, ANCHOR.prog_type,
                                                  ANCHOR.exp_attach_type, None))
        oracle.registry.last_handler_id = self.counter
        return oracle

    def one_input(self, data: bytes) -> None:
        """The libFuzzer callback: raises ``FuzzDivergence`` on the first difference."""
        ops = checks.admissible(decode(data, lifecycle=self.lifecycle), self.policy)
        self.inputs += 1
        if not ops:
            return
        try:
            expected = self.model().run(ops)
        except NotModelledError:
            self.skipped += 1
            return
        session = Session(self.lib)
        actual: list[Answer] = []
        try:
            for op in ops:
                rc, out, _log, calls = execute(session, op)
                actual.append(Answer(rc, out, calls))
        finally:
            self.restore(session)
        divergence = first_divergence(ops, expected, actual)
        if divergence is not None:
            raise FuzzDivergence(f"{divergence.signature} | {divergence.describe()} | ops: "
                                 f"{ops[: divergence.index + 1]!r}")

    def restore(self, session: Session) -> None:
        """Close the input's objects, unregister its handlers in reverse, drop its callbacks."""
        lib = self.lib
        for entry in session.objects:
            if entry is not None:
                lib.close(entry[0])
        for rc in reversed(session.register_results):
            if rc > 0:
                self.counter = max(self.counter, rc)
                lib.unregister(rc)
        lib.drop_callbacks(self._keep_mark)  # nothing can call them any more
        lib.log.clear()
        lib.calls.clear()


# -- command line ------------------------------------------------------------------


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="harness_registry.py", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--libbpf", metavar="TARGET",
                        help=f"default: ${LIBBPF_ENV}, else a libbpf.so next to the executable")
    parser.add_argument("--lifecycle", action="store_true",
                        help="also decode object lifecycle ops (slower)")
    parser.add_argument("--allow-known", action="store_true",
                        help="do not steer around documented bugs that crash sanitizer builds")
    parser.add_argument("--malloc-context", type=int, default=0, metavar="N",
                        help="ASAN malloc_context_size (default 0: fast)")
    parser.add_argument("--instrument", choices=("auto", "yes", "no"), default="auto",
                        help="atheris-instrument our Python modules (auto: plain targets only)")
    parser.add_argument("--replay", action="store_true",
                        help="run the given files through the harness, without libFuzzer")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="with --replay: run the files N times and report inputs/s")
    return parser.parse_known_args(list(argv))


def our_flags(args: argparse.Namespace) -> list[str]:
    """Our flags in the one-token form libFuzzer ignores and passes on."""
    flags = [f"--libbpf={args.libbpf}", f"--malloc-context={args.malloc_context}",
             f"--instrument={args.instrument}"]
    flags += ["--lifecycle"] * args.lifecycle + ["--allow-known"] * args.allow_known
    flags += ["--replay", f"--repeat={args.repeat}"] if args.replay else []
    return flags


def fuzz_env(target_env: dict[str, str], malloc_context: int) -> dict[str, str]:
    env = dict(target_env)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] = merge_options(
            ":".join(o for o in env["ASAN_OPTIONS"].split(":")
                     if not o.startswith("malloc_context_size=")),
            {"malloc_context_size": str(malloc_context)})
    return env


def located_libbpf() -> str | None:
    """The TARGET to use when ``--libbpf`` is not given (module rules), or None."""
    if os.environ.get(LIBBPF_ENV):
        return os.environ[LIBBPF_ENV]
    places = [Path(sys.executable).resolve().parent] if FROZEN else []
    bundle = getattr(sys, "_MEIPASS", None)
    places += [Path(bundle)] if bundle else []
    for place in places:
        found = sorted(place.glob("libbpf.so.[0-9]*.[0-9]*.[0-9]*")) or \
            sorted(place.glob("libbpf.so.1"))
        if found:
            return str(found[-1])
    return None


def check_frozen_preload(variant: str) -> None:
    """A packaged harness cannot re-exec itself: its wrapper must have preloaded the runtime."""
    if variant != "plain" and not os.environ.get("LD_PRELOAD"):
        raise SystemExit("harness: this libbpf is a sanitizer build: run the wrapper script "
                         "next to the package (it preloads sanitizer_with_fuzzer.so)")


def ensure_preload(args: argparse.Namespace, rest: list[str], target_env: dict[str, str]) -> None:
    """Re-exec this script with the sanitizer runtime preloaded, if it is missing."""
    wanted = target_env.get("LD_PRELOAD")
    if not wanted or os.environ.get("LD_PRELOAD", "").split(":")[0] == wanted:
        return
    if os.environ.get(REEXEC_MARK):
        raise SystemExit(f"harness: {wanted} is still not preloaded after re-exec")
    env = {**os.environ, **fuzz_env(target_env, args.malloc_context), REEXEC_MARK: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, str(SCRIPT), *our_flags(args), *rest], env)


def instrument_our_modules(atheris: Any) -> int:
    """atheris-instrument every function of the ``oracle`` and ``fuzz`` packages."""
    count = 0
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("oracle.", "fuzz.")):
            continue
        for value in list(vars(module).values()):
            members = [value]
            if isinstance(value, type) and value.__module__ == name:
                members = list(vars(value).values())
            for fn in members:
                if getattr(fn, "__module__", None) == name and hasattr(fn, "__code__"):
                    atheris.instrument_func(fn)
                    count += 1
    return count


def build(args: argparse.Namespace) -> tuple[Harness, str]:
    """Resolve, load and wrap the target: ``(harness, variant)``."""
    from oracle.environment import model_for
    from oracle.libbpf.lifecycle import bpf_permitted
    from oracle.libbpf.targets import probe, resolve

    target = resolve(args.libbpf)
    model = model_for(target, probe(target), None)
    pol = checks.policy(model.version, target.variant, allow_known=args.allow_known)
    bpf = bpf_permitted() if args.lifecycle else False
    return Harness(Libbpf(target.path), pol, lifecycle=args.lifecycle, bpf=bpf,
                   model=model), target.variant


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = parse(sys.argv[1:] if argv is None else argv)
    from oracle.libbpf.targets import resolve

    args.libbpf = args.libbpf or located_libbpf()
    if args.libbpf is None:
        raise SystemExit(f"harness: no libbpf: give --libbpf=TARGET or set ${LIBBPF_ENV}")
    target = resolve(args.libbpf)
    if FROZEN:
        check_frozen_preload(target.variant)
    else:
        ensure_preload(args, rest, target.env("atheris"))
    harness, variant = build(args)
    if args.replay:
        inputs = [Path(name).read_bytes() for name in rest]
        start = time.perf_counter()
        for _ in range(args.repeat):
            for data in inputs:
                harness.one_input(data)
        rate = len(inputs) * args.repeat / max(time.perf_counter() - start, 1e-9)
        print(f"replayed {len(inputs)} input(s) x{args.repeat}: no divergence "
              f"(libbpf {harness.version} {variant}, {harness.skipped} not modelled,"
              f" {rate:.0f} inputs/s, ASAN_OPTIONS={os.environ.get('ASAN_OPTIONS', '')!r})")
        return 0
    import atheris

    if args.instrument == "yes" or (args.instrument == "auto" and variant == "plain"):
        print(f"harness: instrumented {instrument_our_modules(atheris)} Python functions",
              file=sys.stderr)
    argv0 = shlex.quote(sys.executable) if FROZEN else \
        f"{shlex.quote(sys.executable)} {shlex.quote(str(SCRIPT))}"
    atheris.Setup([argv0, *our_flags(args), *rest], harness.one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
