"""One CPU core for a whole benchmark process: import this module before jax.

XLA's flags for one thread are not enough: with ``--xla_cpu_multi_thread_eigen=false`` (and
the ``intra_op_parallelism_threads=1`` the NumPyro benchmarks used to set) jax 0.10's CPU
client still kept 1.8 cores busy on a jitted GEMM here, so NumPyro had two cores where torch
had one. Pinning the process to one core before jax starts its threads gives every side,
XLA's thread pool included, the same single core; torch is also told to use one thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
#: the core this process and every thread it starts run on (the last one it was allowed)
CORE = max(os.sched_getaffinity(0))
os.sched_setaffinity(0, {CORE})
