"""Start and stop the component processes, each by its own PID, logging to one file per component.

A process is only ever signalled after checking that its PID still runs the binary it was started from
(``/proc/<pid>/exe``), so a stale state file can never kill an unrelated process that reused the PID.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ComponentProcess", "is_running", "pid_alive", "spawn", "stop_all", "tail"]

_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class ComponentProcess:
    """A started component: its name, PID, binary and log file."""

    name: str
    pid: int
    binary: Path
    log: Path


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM when the parent (thread) that started it ends, so a killed
    # test run leaves no control plane behind.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str],
    die_with_parent: bool,
) -> tuple[ComponentProcess, subprocess.Popen[bytes]]:
    """Start ``argv`` in its own session with stdout and stderr appended to ``log``.

    With ``die_with_parent`` the process gets SIGTERM when the calling thread ends (Linux ``PR_SET_PDEATHSIG``);
    without it, it outlives the caller (``tokenscale dev-cluster up`` returns while the cluster runs on).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    preexec: Callable[[], None] | None = _die_with_parent if die_with_parent else None
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            preexec_fn=preexec,  # noqa: PLW1509 - the callable only calls prctl, which is async-signal-safe
        )
    return ComponentProcess(name=name, pid=popen.pid, binary=Path(argv[0]), log=log), popen


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists and is not a zombie (exited, not yet reaped), whatever it runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def is_running(process: ComponentProcess) -> bool:
    """Whether ``process.pid`` is alive (not a zombie) and still runs ``process.binary``."""
    try:
        if Path(os.readlink(f"/proc/{process.pid}/exe")) != process.binary.resolve():
            return False
    except OSError:
        return False
    return pid_alive(process.pid)


def _wait_gone(process: ComponentProcess, popen: subprocess.Popen[bytes] | None, *, timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            return True
        if popen is None and not is_running(process):
            return True
        time.sleep(_POLL_SECONDS)
    return False


def stop_all(
    processes: Sequence[ComponentProcess],
    *,
    popens: Mapping[int, subprocess.Popen[bytes]] | None = None,
    grace_seconds: float = 5.0,
) -> list[str]:
    """Stop ``processes`` in reverse order: SIGTERM, then SIGKILL after ``grace_seconds``.

    ``popens`` are the handles of processes this Python process started, which are then reaped. Returns the
    names of the processes that had to be killed.
    """
    killed: list[str] = []
    handles = popens or {}
    for process in reversed(processes):
        popen = handles.get(process.pid)
        if not is_running(process):
            if popen is not None:
                popen.poll()
            continue
        os.kill(process.pid, signal.SIGTERM)
        if not _wait_gone(process, popen, timeout_seconds=grace_seconds):
            if is_running(process):
                os.kill(process.pid, signal.SIGKILL)
            killed.append(process.name)
            if popen is not None:
                popen.wait()
    return killed


def tail(path: Path, *, lines: int) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 200 * lines))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
