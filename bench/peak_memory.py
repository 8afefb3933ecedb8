"""Peak resident memory of a Spark run on this machine, stage by stage, read from /proc.

In ``local[*]`` the driver and the executors share one JVM, and the executors' Python workers
(pyspark's daemon and the workers it forks) are that JVM's descendants. A sampler thread reads
the resident set size (VmRSS) of three parts every ``interval`` seconds and keeps each part's
highest reading until the next ``take()``:

- ``jvm``: the JVM (driver and local executors: heap, off-heap, code);
- ``python_workers``: the JVM's descendant processes, summed (executors' Python: Arrow batches,
  numpy blocks);
- ``driver_python``: this process (the driver's Python: what is brought to the driver).

A peak shorter than the interval can be missed; the figures are a floor on the true peaks.
Linux only (the benchmarks run there).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

PARTS = ("jvm", "python_workers", "driver_python")


def resident_bytes(pid: int) -> int:
    """VmRSS of a process in bytes (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name, in parentheses, may hold spaces: the parent pid follows its ")".
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending += children.get(child, [])
    return found


class PeakMemory:
    """Samples the JVM ``jvm_pid``, its descendants and this process; ``take()`` returns each
    part's peak (bytes) since the previous ``take()``. Use as a context manager."""

    def __init__(self, jvm_pid: int, interval: float = 0.25):
        self.jvm_pid, self.interval = jvm_pid, interval
        self._peaks = dict.fromkeys(PARTS, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        """Read every part once and raise its peak where the reading is higher."""
        reading = {
            "jvm": resident_bytes(self.jvm_pid),
            "python_workers": sum(resident_bytes(pid) for pid in descendants(self.jvm_pid)),
            "driver_python": resident_bytes(os.getpid()),
        }
        with self._lock:
            self._peaks = {part: max(self._peaks[part], reading[part]) for part in PARTS}

    def take(self) -> dict[str, int]:
        """Each part's peak since the last take (one fresh reading included), and start anew."""
        self.sample()
        with self._lock:
            peaks, self._peaks = self._peaks, dict.fromkeys(PARTS, 0)
        return peaks

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


def jvm_pid(spark) -> int:
    """The pid of the session's JVM (the driver's; in local mode the executors' too)."""
    return int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
