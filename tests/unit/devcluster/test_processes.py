"""Components are started detached with their own log and stopped by PID, never by a PID that changed hands."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tokenscale.devcluster import processes


def _sleeper(tmp_path: Path, name: str) -> tuple[processes.ComponentProcess, subprocess.Popen[bytes]]:
    sleep = shutil.which("sleep")
    assert sleep is not None
    return processes.spawn(name, [sleep, "60"], log=tmp_path / f"{name}.log", env=os.environ, die_with_parent=True)


def test_stop_all_stops_every_process_and_reaps_them(tmp_path: Path) -> None:
    started = [_sleeper(tmp_path, name) for name in ("first", "second")]
    spawned = [process for process, _ in started]
    popens = {process.pid: popen for process, popen in started}

    assert all(map(processes.is_running, spawned))
    killed = processes.stop_all(spawned, popens=popens)

    assert killed == []
    assert not any(map(processes.is_running, spawned))


def test_a_pid_now_running_another_binary_is_not_ours(tmp_path: Path) -> None:
    process, popen = _sleeper(tmp_path, "sleeper")
    impostor = processes.ComponentProcess(name="etcd", pid=process.pid, binary=tmp_path / "etcd", log=process.log)
    try:
        assert processes.is_running(process)
        assert not processes.is_running(impostor)
        assert processes.stop_all([impostor]) == []
        assert processes.is_running(process)
    finally:
        processes.stop_all([process], popens={process.pid: popen})


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))

    assert processes.tail(log, lines=2) == "line 98\nline 99"
    assert processes.tail(tmp_path / "missing.log", lines=2) == ""
