"""glibc's allocator, kept from handing freed memory back to the kernel between training steps.

A training step frees and reallocates the same large buffers (activations, gradients); with
glibc's defaults, blocks over its dynamic mmap threshold are unmapped when freed and fault in
again, page by page, on the next step, and the top of the heap is trimmed. Measured
(benchmarks/bench_malloc.py, resnet18 steps on laptop-sized batches): ~16,000 minor page faults
per step with the defaults, ~80 with these settings, kernel time 0.035 → 0.001 s per step; on a
machine where faults are dear, the epoch went from 27 to 20 s (issue 23).

`keep_freed_memory()` sets them for this process (`mallopt`) and, through the environment, for
every process started from it (a local Ray's workers, subprocesses); a user's own MALLOC_*
values win. Elsewhere than glibc (macOS, musl) it changes nothing.
"""

from __future__ import annotations

import ctypes
import os

SETTINGS = {  # glibc's variable → mallopt's parameter number, and the value
    "MALLOC_TRIM_THRESHOLD_": (-1, 2**30),  # keep up to 1 GiB free at the heap's top
    "MALLOC_TOP_PAD_": (-2, 2**30),  # grow the heap in steps of 1 GiB
    "MALLOC_MMAP_THRESHOLD_": (-3, 32 * 2**20),  # blocks under 32 MiB (glibc's cap) from the heap
}


def keep_freed_memory() -> None:
    """Apply SETTINGS to this process and to the processes it starts."""
    for name, (_, value) in SETTINGS.items():
        os.environ.setdefault(name, str(value))
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to set
        return
    for name, (parameter, _) in SETTINGS.items():
        try:
            mallopt(parameter, int(os.environ[name]))
        except ValueError:  # a user's unreadable value: glibc ignores it at start-up too
            continue
