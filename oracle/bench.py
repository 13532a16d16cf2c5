"""``sec-oracle bench``: throughput figures, always measured side by side in one run.

Rules:
- A benchmark reports a ratio between two things measured in the same process,
  interleaved round by round (A, B, A, B, ...), and the median of the rounds,
  so a noisy shared machine moves both sides alike.  Nothing here asserts a
  time; the tests never time anything.
- ``matcher``: the model's lookup (``oracle.model.lookup.find_sec_def`` over the
  fast index) against the naive reference scan (``oracle.model.reference``) on
  the same names and the same registered handlers.
- ``worker``: ops/s through the crash-isolated worker against the same ops
  called in-process (``oracle.libbpf.bench``).
- ``campaign``: a whole campaign's ops/s beside the same op stream run by this
  project's Python executor in-process and by a generated C program
  (``oracle.campaign.bench``); without ``--json`` a small table comes first.
- ``replay``: ops/s of ``sec-oracle replay`` on the oracle, for a lookup-heavy
  trace and a lifecycle-heavy one (``oracle.replay.bench_replay``); its target
  is absolute, so this one reports rates, not a ratio.
- ``fuzz``: per harness, exec/s under libFuzzer (``sec-oracle fuzz``), inputs/s
  of the same harness without libFuzzer (``--replay`` of the seeds) and the C
  libFuzzer harness's exec/s (``fuzz.bench``); ``--libbpf`` defaults to
  ``1.7.0+fuzz`` here, ``--time`` is each libFuzzer run's.  Not part of ``all``
  (it takes ``3 x --time`` seconds and needs a fuzz build).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from oracle.argtypes import positive_int
from oracle.model import lookup
from oracle.model.oracle import Oracle
from oracle.model.reference import c_find_sec_def


def workload_names(oracle: Oracle, count: int, seed: int) -> list[bytes]:
    """Lookup names of the kind campaigns send: built-in and custom stems, hits and misses."""
    rng = random.Random(seed)
    stems = [d.sec.rstrip(b"+") for d in oracle.release.table.section_defs]
    stems += [h.sec.rstrip(b"+") for h in oracle.custom_handlers() if h.sec is not None]
    suffixes = [b"", b"/", b"/do_sys_open", b"/a/b", b"x", b".s", b"/LLC-load-misses"]
    names = [rng.choice(stems) + rng.choice(suffixes) for _ in range(count)]
    names += [b"?" + n for n in names[: count // 20]] + [b"no_such_section"] * (count // 20)
    rng.shuffle(names)
    return names[:count]


def demo_oracle(version: str, n_custom: int) -> Oracle:
    """An oracle with ``n_custom`` custom handlers of all forms and a fallback."""
    oracle = Oracle(version)
    forms = [b"", b"/", b"+"]
    for i in range(n_custom):
        oracle.register_prog_handler(b"custom%d" % i + forms[i % 3], 1, 0)
    oracle.register_prog_handler(b"kprobe+", 2, 0)  # an override of a built-in
    oracle.register_prog_handler(None, 1, 0)
    return oracle


def interleaved(contenders: dict[str, Callable[[], int]], rounds: int) -> dict[str, float]:
    """Run each contender ``rounds`` times, interleaved; median items/s per contender."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            items = fn()
            rates[name].append(items / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def bench_matcher(version: str = "1.7.0", n_names: int = 20_000, n_custom: int = 16,
                  rounds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Lookups/s of the fast index, the public API and the reference scan, in one run."""
    oracle = demo_oracle(version, n_custom)
    names = workload_names(oracle, n_names, seed)
    registry, release = oracle.registry, oracle.release
    custom = [(h.sec, h) for h in oracle.custom_handlers() if h.sec is not None]
    builtins = [(d.sec, d) for d in release.table.section_defs]
    fallback = registry.fallback

    def fast() -> int:
        find = lookup.find_sec_def
        for name in names:
            find(registry, release, name)
        return len(names)

    def api() -> int:
        by_name = oracle.prog_type_by_name
        for name in names:
            by_name(name)
        return len(names)

    def reference() -> int:
        for name in names:
            c_find_sec_def(custom, builtins, fallback, name)
        return len(names)

    for name in names:  # same answers, or the comparison means nothing
        assert lookup.find_sec_def(registry, release, name) is c_find_sec_def(
            custom, builtins, fallback, name)
    rates = interleaved({"fast": fast, "api": api, "reference": reference}, rounds)
    return {
        "bench": "matcher",
        "version": version,
        "names": len(names),
        "custom_handlers": len(custom),
        "builtin_entries": len(builtins),
        "rounds": rounds,
        "lookups_per_s": {k: round(v) for k, v in rates.items()},
        "speedup_fast_vs_reference": round(rates["fast"] / rates["reference"], 1),
        "speedup_api_vs_reference": round(rates["api"] / rates["reference"], 1),
    }


def _run(args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    if args.what in ("matcher", "all"):
        results.append(bench_matcher(args.version, args.names, rounds=args.rounds))
    libbpf = args.libbpf or ("1.7.0+fuzz" if args.what == "fuzz" else "system")
    if args.what == "fuzz":
        from fuzz.bench import bench_fuzz
        from fuzz.bench import describe as describe_fuzz

        results.append(bench_fuzz(libbpf, int(args.time), args.repeat))
        if not args.json:
            print(describe_fuzz(results[-1]))
    if args.what in ("worker", "all"):
        from oracle.libbpf.bench import bench_worker
        from oracle.libbpf.targets import resolve

        results.append(bench_worker(resolve(libbpf), args.ops, args.batch))
    if args.what in ("campaign", "all"):
        from oracle.campaign.bench import bench_campaign, describe
        from oracle.campaign.check import CheckConfig, prepare

        env = prepare(CheckConfig(libbpf=libbpf))
        results.append(bench_campaign(env, args.cases, rounds=args.rounds))
        if not args.json:
            print(describe(results[-1]))
    if args.what in ("replay", "all"):
        from oracle.replay import bench_replay

        results.append({
            "bench": "replay",
            "version": args.version,
            "ops": args.ops,
            "rounds": args.rounds,
            "registry_ops_per_s": round(bench_replay(args.ops, version=args.version,
                                                     rounds=args.rounds)),
            "lifecycle_ops_per_s": round(bench_replay(args.ops, version=args.version,
                                                      rounds=args.rounds, lifecycle=True)),
        })
    for result in results:
        print(json.dumps(result, indent=None if args.json else 2))
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("bench", help="throughput figures, measured side by side in one run")
    parser.add_argument("what", nargs="?", default="matcher",
                        choices=["matcher", "worker", "campaign", "replay", "fuzz", "all"])
    parser.add_argument("--version", default="1.7.0", help="oracle release (matcher, replay)")
    parser.add_argument("--names", type=positive_int, default=20_000, help="lookups per round")
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--libbpf", default=None,
                        help="target (default: system; 1.7.0+fuzz for fuzz)")
    parser.add_argument("--ops", type=positive_int, default=50_000)
    parser.add_argument("--batch", type=positive_int, default=256)
    parser.add_argument("--cases", type=positive_int, default=3000, help="cases for campaign")
    parser.add_argument("--time", type=positive_int, default=10, metavar="S",
                        help="fuzz: seconds of each libFuzzer run")
    parser.add_argument("--repeat", type=positive_int, default=20, metavar="N",
                        help="fuzz: replays of the seeds without libFuzzer")
    parser.add_argument("--json", action="store_true", help="one line of JSON per result")
    parser.set_defaults(handler=_run)


__all__: Sequence[str] = ["bench_matcher", "interleaved", "register"]
