"""One process-wide thread pool for the preprocessing work that releases the GIL while it runs
(FFmpeg decoding, Pillow and OpenCV resizing), so that one request's frames can use more than
one core: on 2 cores, resizing a 720p clip's sampled frames and decoding them with two
decoders side by side both take markedly less wall time than in one thread (figures:
docs/speed.md).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

# Threads of the pool: each request's own thread works too, so this many more run beside it.
THREADS = min(4, os.cpu_count() or 1)

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = -1


def shared_pool() -> ThreadPoolExecutor:
    """This process's pool. A forked process (a DataLoader worker) makes its own: the threads of
    a pool it inherited do not exist in it, and work sent there would never run. Work sent here
    must not wait for other work sent here (a full pool would deadlock)."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="preprocess")
            _pool_pid = os.getpid()
        return _pool
