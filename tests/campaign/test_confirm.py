"""Confirming findings past their fresh replay: the ASan twin of a plain build, and the
C reproducer compiled and run against the library."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from oracle import environment
from oracle.bpfelf import ObjectSpec, Program
from oracle.campaign.confirm import on_sanitizer, run_repro, twin
from oracle.errors import OracleError
from oracle.libbpf.lifecycle import bpf_permitted
from oracle.model.oracle import Oracle
from oracle.ops import (
    Answer,
    Callback,
    HandleRef,
    HandlerOpts,
    Load,
    ObjRef,
    Op,
    Open,
    Register,
    Unregister,
)
from oracle.repro_c import emit_c
from oracle.traces import Record, Trace, TraceHeader
from tests.targets import target_or_skip

pytestmark = pytest.mark.libbpf


def env_or_skip(spec: str) -> environment.Environment:
    target_or_skip(spec)
    try:
        return environment.prepare(spec)
    except OracleError as exc:
        pytest.skip(f"libbpf {spec} unusable: {exc}")


def handler(sec: bytes, cookie: int) -> Register:
    return Register(sec, 1, 0, HandlerOpts(cookie=cookie, prog_prepare_load_fn=Callback(0),
                                           prog_attach_fn=Callback(0)))


#: docs/known-bugs.md KB3: a program bound to slot 1, then slot 0 unregistered
KB3_TRIGGER: list[Op] = [handler(b"a", 10), handler(b"b", 20), handler(b"c", 30),
                         Open(ObjectSpec((Program(b"b"),), b"GPL")),
                         Unregister(HandleRef(0)), Load(ObjRef(0))]


def test_twins_name_the_same_library_in_another_variant() -> None:
    env = env_or_skip("1.7.0")
    assert twin(env, "asan") == "1.7.0+asan"
    assert twin(env, "plain") == "1.7.0"


def test_a_plain_builds_case_is_run_again_on_its_asan_twin() -> None:
    if not bpf_permitted():
        pytest.skip("bpf() is not permitted here: KB3's trigger loads a program")
    env = env_or_skip("1.7.0")
    target_or_skip("1.7.0+asan")
    run = on_sanitizer(env, KB3_TRIGGER, timeout=30.0)
    assert run.target == "1.7.0+asan" and run.reason is None
    assert run.crashed and run.sanitizer == "heap-use-after-free", run
    assert any("bpf_object_load_prog" in frame for frame in run.frames), run.frames


def repro_for(env: environment.Environment, ops: list[Op], answers: list[Answer],
              tmp_path: Path) -> Path:
    trace = Trace(TraceHeader(env.info), tuple(Record(op, a) for op, a in zip(ops, answers,
                                                                              strict=True)))
    path = tmp_path / "repro.c"
    path.write_text(emit_c(trace, title="t", summary="s"))
    return path


def test_a_reproducer_that_holds_does_not_reproduce(tmp_path: Path) -> None:
    env = env_or_skip("1.7.0")
    ops: list[Op] = [Register(b"abc", 1, 0), Unregister(HandleRef(0))]
    run = run_repro(repro_for(env, ops, Oracle(env.profile).run(ops), tmp_path), env.info)
    assert run.reproduces is False and run.status == 0, run
    assert run.detail.startswith("PASS") and "does NOT reproduce" in run.sentence()


def test_a_reproducer_of_a_divergence_reproduces(tmp_path: Path) -> None:
    env = env_or_skip("1.7.0")
    ops: list[Op] = [Register(None, 1, 0), Register(None, 1, 0)]  # a second fallback: -EBUSY
    run = run_repro(repro_for(env, ops, [Answer(1), Answer(2)], tmp_path), env.info)
    assert run.reproduces is True and run.status == 1, run
    assert run.detail.startswith("FAIL")


def test_a_reproducer_of_a_sanitizer_crash_reproduces_with_the_runtime(tmp_path: Path) -> None:
    if not bpf_permitted():
        pytest.skip("bpf() is not permitted here: KB3's trigger loads a program")
    env = env_or_skip("1.7.0+asan")
    answers = Oracle(env.profile, bpf=True).run(KB3_TRIGGER)
    run = run_repro(repro_for(env, KB3_TRIGGER, answers, tmp_path), env.info)
    assert run.reproduces is True and run.status not in (0, None), run
    assert "AddressSanitizer" in run.detail or run.status != 1, run


def test_a_finding_says_what_its_reproducer_did(tmp_path: Path) -> None:
    """End to end: every finding of a check run carries its repro runs, in finding.json,
    summary.md and the header of repro.c."""
    from oracle.cli import main

    env_or_skip("1.7.0")
    report = tmp_path / "r.json"
    main(["check", "--libbpf", "1.7.0", "--time", "12", "--findings", str(tmp_path / "f"),
          "--report", str(report)])
    data = json.loads(report.read_text())
    for finding in data["findings"]:
        if not finding["trace"]:
            continue
        directory = Path(finding["trace"]).parent
        assert finding["repro_runs"], finding
        assert "sec-oracle ran this program" in (directory / "repro.c").read_text()
        assert "## repro.c, compiled and run" in (directory / "summary.md").read_text()
        stored = json.loads((directory / "finding.json").read_text())
        assert stored["repro_runs"] == finding["repro_runs"]
    assert os.path.exists(report)


def test_a_plain_crash_finding_is_amended_with_its_asan_twins_view(tmp_path: Path) -> None:
    """A finding written during the campaign learns afterwards what the ASan twin did."""
    from oracle.campaign.check import CheckConfig, JobStats, rerun_crashes_on_sanitizer
    from oracle.campaign.findings import Finding, write_finding
    from oracle.campaign.runner import CaseOutcome
    from oracle.libbpf.worker import CrashEvent

    if not bpf_permitted():
        pytest.skip("bpf() is not permitted here: KB3's trigger loads a program")
    env = env_or_skip("1.7.0")
    target_or_skip("1.7.0+asan")
    crash = CrashEvent(kind="crash", signal=11, exit_code=None, sanitizer=None, message="",
                       frames=(), op_index=5, ops=tuple(KB3_TRIGGER), stderr_tail="")
    outcome = CaseOutcome(tuple(KB3_TRIGGER), tuple(Oracle(env.profile).run(KB3_TRIGGER)),
                          (), None, crash)
    finding = Finding("crash:SIGSEGV:op=load", "crash", "s", outcome)
    write_finding(tmp_path, finding, env.info, 0, env.target)
    stats = JobStats(findings={finding.signature: finding})
    rerun_crashes_on_sanitizer(env, stats, CheckConfig(libbpf="1.7.0"))
    assert finding.sanitizer_run is not None and finding.sanitizer_run.crashed
    assert finding.directory is not None
    stored = json.loads((finding.directory / "finding.json").read_text())
    assert stored["sanitizer_run"]["sanitizer"] == "heap-use-after-free"
    assert "heap-use-after-free" in (finding.directory / "summary.md").read_text()
