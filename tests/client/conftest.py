"""The client package is imported from its folder, as `python client/pipeline_http_client.py`
imports it (the tests that install it into a fresh virtualenv use the installed copy)."""
from __future__ import annotations

import sys
from pathlib import Path

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))
