"""The benchmark's peak-memory sampler, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.peak_memory import PeakMemory, descendants, resident_bytes

MIB = 2**20
HOLD = "import sys, time; block = bytearray(160 * 2**20); block[::4096] = b'x' * len(block[::4096]); "
HOLD += "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)"


def test_a_child_s_peak_is_kept_until_taken_even_after_it_exits():
    child = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        assert child.pid in descendants(os.getpid())
        assert resident_bytes(child.pid) > 150 * MIB
        # The sampled "JVM" here is this test's own process, so its children are the workers.
        with PeakMemory(os.getpid(), interval=0.05) as memory:
            time.sleep(0.3)
            child.kill()
            child.wait()
            time.sleep(0.3)
            peak = memory.take()
            after = memory.take()
    finally:
        child.kill()
    # Other children of the test process (a Spark JVM of another test) count in both readings.
    assert peak["python_workers"] - after["python_workers"] > 150 * MIB, (peak, after)
    assert peak["jvm"] == peak["driver_python"] > 10 * MIB
    assert resident_bytes(child.pid) == 0, "a process that has gone reads as 0"
