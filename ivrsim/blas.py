"""One BLAS thread per process.

ivrsim's DSP multiplies small matrices every 20 ms frame of every call (the Goertzel bank, the line
filters), and for those OpenBLAS's thread pool costs more than it gives: its threads spin between tiny
products. Measured with ``bench/scale.py --calls 300 --analyses 0 --configs 1,2``: one worker ran the same
calls on 8.7 CPU-seconds with one BLAS thread against 19.6 with two, and two workers reached 285x real
time against 135x. Processes ivrsim owns (the command line, which runs the server, and every worker) call
``one_blas_thread``; a program that imports ivrsim as a library keeps its own setting.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread() -> None:
    """Limit every BLAS library loaded in this process to one thread (threadpoolctl; at any time, even
    after numpy is imported)."""
    threadpool_limits(limits=1, user_api="blas")
