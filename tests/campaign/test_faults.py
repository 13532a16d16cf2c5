"""Faults a real machine produces, each ending a campaign with its report.

Each test runs ``sec-oracle check`` as a process of its own (its temp dir and
an environment mark of its own), does one thing to it (a signal to it, to a
worker copy or to a job process, a closed stdout, a full disk) and asserts: the
exit status, the report and JUnit say what happened, and no process and no
temp dir is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from oracle.errors import LibbpfError
from tests.mounts import small_tmpfs
from tests.targets import target_or_skip

MARK = "SEC_ORACLE_FAULT_TEST"


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def is_worker(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return b"oracle.libbpf.child" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def marked(token: str) -> list[int]:
    """Live processes whose environment carries this run's mark."""
    needle = f"{MARK}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0") and \
                    "Z" not in (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]:
                found.append(int(entry.name))
    return found


class Run:
    """One ``sec-oracle check`` process with its report, JUnit, findings and temp dir."""

    def __init__(self, tmp_path: Path, *args: str, libbpf: str = "1.7.0",
                 stdout: int | IO[Any] | None = None, stderr: int | IO[Any] | None = None,
                 findings: Path | None = None) -> None:
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        self.report = tmp_path / "report.json"
        self.junit = tmp_path / "junit.xml"
        self.findings = findings or tmp_path / "findings"
        self.out = tmp_path / "stdout"
        self.token = uuid.uuid4().hex
        env = {**os.environ, "TMPDIR": str(self.tmp), MARK: self.token}
        argv = [sys.executable, "-m", "oracle", "check", "--libbpf", libbpf,
                "--report", str(self.report), "--junit", str(self.junit),
                "--findings", str(self.findings), *args]
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL,
            stdout=open(self.out, "wb") if stdout is None else stdout,  # noqa: SIM115
            stderr=subprocess.DEVNULL if stderr is None else stderr)

    def started(self, workers: int = 2, timeout: float = 60.0) -> None:
        """Wait until the campaign runs: its announcement printed, its workers up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the campaign ended before it was hit"
            if len(self.descendants()) >= workers and (
                    not self.out.exists() or b"check: libbpf" in self.out.read_bytes()):
                time.sleep(1.0)  # into its chained batches
                return
            time.sleep(0.1)
        pytest.fail("the campaign did not start")

    def descendants(self) -> list[int]:
        found, todo = [], [self.proc.pid]
        while todo:
            for child in children(todo.pop()):
                found.append(child)
                todo.append(child)
        return found

    def copies(self) -> list[int]:
        """The libbpf workers' forked copies (grandchildren: parent, worker, copy; not a
        compiler's children, say)."""
        return [g for c in children(self.proc.pid) if is_worker(c) for g in children(c)]

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.report.read_text())
        assert data["exit_status"] == self.proc.returncode
        return data

    def assert_clean(self) -> None:
        """No process of this run alive, no temp dir, no half-written finding."""
        deadline = time.monotonic() + 5.0
        while marked(self.token) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marked(self.token) == []
        assert list(self.tmp.iterdir()) == []
        if self.findings.is_dir():
            assert [p for p in self.findings.iterdir() if p.name.startswith(".")] == []
        assert self.junit.is_file()


@pytest.fixture(autouse=True)
def built_target() -> None:
    target_or_skip("1.7.0")


@pytest.fixture
def broken() -> Iterator[tuple[str, str]]:
    """A build with a bug no known-bug entry explains (``prog_type_by_name`` writes its
    outputs on error): ``--libbpf PATH --source TREE``, so a run finds something NEW."""
    from oracle.libbpf import debsrc
    from oracle.libbpf.mutants import build_mutant

    try:
        yield str(build_mutant("1.7.0", "prog-type-outs-on-error")), str(
            debsrc.source_tree("1.7.0"))
    except LibbpfError as exc:
        pytest.skip(f"mutant build unavailable: {exc}")


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_the_run_with_its_report(tmp_path: Path, sig: signal.Signals,
                                               status: int) -> None:
    run = Run(tmp_path, "--time", "120")
    run.started()
    sent = time.monotonic()
    run.proc.send_signal(sig)
    assert run.wait(30) == status
    assert time.monotonic() - sent < 15
    data = run.data()
    assert data["interrupted"] == sig.name and data["cases"] > 0
    assert f"interrupted by {sig.name}" in run.junit.read_text()
    run.assert_clean()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_a_jobs_run_stops_every_job(tmp_path: Path, sig: signal.Signals) -> None:
    run = Run(tmp_path, "--time", "120", "--jobs", "2")
    run.started(workers=6)
    sent = time.monotonic()
    run.proc.send_signal(sig)
    assert run.wait(40) == 128 + sig
    assert time.monotonic() - sent < 20
    data = run.data()
    assert data["interrupted"] == sig.name and data["cases"] > 0 and data["errors"] == []
    run.assert_clean()


def test_a_killed_job_process_costs_its_results_only(tmp_path: Path) -> None:
    run = Run(tmp_path, "--time", "10", "--jobs", "2")
    run.started(workers=6)
    jobs = [pid for pid in children(run.proc.pid) if children(pid)]
    os.kill(jobs[0], signal.SIGKILL)
    assert run.wait(60) == 2
    data = run.data()
    assert data["cases"] > 0 and data["interrupted"] is None
    assert len(data["errors"]) == 1 and "killed by SIGKILL" in data["errors"][0]
    run.assert_clean()


def test_a_stopped_job_process_cannot_hold_the_run(tmp_path: Path) -> None:
    run = Run(tmp_path, "--time", "6", "--jobs", "2")
    run.started(workers=6)
    jobs = [pid for pid in children(run.proc.pid) if children(pid)]
    os.kill(jobs[0], signal.SIGSTOP)  # continued when the time budget is spent
    assert run.wait(60) == 0
    data = run.data()
    assert data["cases"] > 0 and data["errors"] == []
    run.assert_clean()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_a_failure_that_does_not_reproduce_is_unconfirmed(tmp_path: Path,
                                                          sig: signal.Signals) -> None:
    run = Run(tmp_path, "--time", "20")
    run.started()
    # A copy may end on its own just before the signal, and one killed while a finding
    # is shrunk or confirmed is only a candidate that did not reproduce: hit copies
    # until a finding of the signal is written (findings are written as they are found).
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and not any(
            d.name.startswith(("crash-SIGKILL", "hang-")) for d in run.findings.glob("*")):
        for copy in run.copies():
            with contextlib.suppress(ProcessLookupError):
                os.kill(copy, sig)
        time.sleep(0.5)
    assert run.wait(120) == 0  # nothing confirmed
    data = run.data()
    killed = [f for f in data["findings"] if not f["confirmed"]]
    assert killed, "the killed copy was not seen"
    for finding in killed:
        assert Path(finding["trace"]).is_file()
    # what did reproduce is KB3, from its fresh cases (a killed one of them may be
    # labelled KB3 too, by its cause, but stays unconfirmed)
    assert {f["known"] for f in data["findings"] if f["confirmed"]} <= {"KB3"}, data
    out = run.out.read_text()
    assert "[unconfirmed" in out and "[NEW]" not in out
    run.assert_clean()


def test_a_closed_stdout_keeps_the_exit_status_and_report(
        tmp_path: Path, broken: tuple[str, str]) -> None:
    library, source = broken
    read, write = os.pipe()
    os.close(read)
    try:
        run = Run(tmp_path, "--time", "6", "--source", source, libbpf=library, stdout=write)
    finally:
        os.close(write)
    assert run.wait(120) == 1  # its NEW finding
    data = run.data()
    assert any(f["known"] is None and f["confirmed"] for f in data["findings"])
    run.assert_clean()


def test_an_unwritable_stderr_is_not_fatal(tmp_path: Path) -> None:
    with open("/dev/full", "wb") as full:
        run = Run(tmp_path, "--time", "3", stderr=full)
        assert run.wait(60) == 0
    assert run.data()["cases"] > 0
    run.assert_clean()


def test_a_full_disk_under_findings_keeps_them_in_the_report(
        tmp_path: Path, broken: tuple[str, str]) -> None:
    library, source = broken
    with small_tmpfs(tmp_path / "full", "16k") as full:
        (full / "filler").write_bytes(b"\0" * 12_000)  # leaves less than a finding needs
        run = Run(tmp_path, "--time", "6", "--source", source, libbpf=library,
                  findings=full / "findings")
        assert run.wait(120) == 1  # the NEW finding is still confirmed
        data = run.data()
        unwritten = [f for f in data["findings"] if f["write_error"]]
        assert unwritten and all("No space left" in f["write_error"] for f in unwritten)
        assert all(f["trace"] is None for f in unwritten)
        run.assert_clean()
