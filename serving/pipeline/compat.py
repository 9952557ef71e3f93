"""The one Python-3.11 shim for Paddle Serving 0.9. Import this module before any
`paddle_serving_*` import (serving.pipeline.ops and serving.pipeline.service do it first thing).

Why: `paddle_serving_client/httpclient.py`, which `paddle_serving_server.pipeline` imports,
does `from collections import Iterable`. The abstract collection classes moved to
`collections.abc` in Python 3.3 and their old aliases were removed in Python 3.10, so the
import fails on the Python this service runs on. Putting the aliases back before that import is
the smallest change that lets the unmodified 0.9 wheels load; nothing else is patched.
"""
from __future__ import annotations

import collections
import collections.abc

_REMOVED_ALIASES = ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable")

for _name in _REMOVED_ALIASES:
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
