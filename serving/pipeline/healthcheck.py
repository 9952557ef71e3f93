"""Container health check: the service's readiness request, sent to the port it serves on.

    python -m serving.pipeline.healthcheck        # exit 0: ready; 1: not answering (or not ready)

Docker's HEALTHCHECK and the Kubernetes probes run it inside the container. It sends the `ping`
request (`{"key": ["ping"], "value": [""]}`, answered without inference) over HTTP to
127.0.0.1, so a pass means the REST front end and the pipeline both answer. The port is
resolved the way the service resolves it: PPTSM_HTTP_PORT, else `http_port` of the config
(PPTSM_CONFIG, else pipeline_config/config.yml); a `--http-port` given to the service on its
command line is not visible here, so containers set ports through the environment. Imports
only PyYAML and the standard library: it runs every few seconds next to the service.
"""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Optional

import yaml

from serving.pipeline import env_overrides

PING_TIMEOUT_S = 4.0
SERVICE_NAME = "pptsm"  # the REST path: /pptsm/prediction


def ping(http_port: int, timeout: float = 2.0) -> Optional[dict]:
    """The readiness request; returns the decoded answer or None if the service is not up."""
    body = json.dumps({"key": ["ping"], "value": [""]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/{SERVICE_NAME}/prediction",
                                     data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return answer if answer.get("err_no") == 0 else None


def http_port() -> int:
    """The HTTP port the service in this environment listens on."""
    path = env_overrides.resolve_config(None, os.environ)
    conf = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return int(env_overrides.apply_env_overrides(conf, os.environ)["http_port"])


def main() -> int:
    try:
        port = http_port()
    except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
        print(f"unhealthy: cannot tell the service's port: {exc}", file=sys.stderr)
        return 1
    answer = ping(port, timeout=PING_TIMEOUT_S)
    if answer is None:
        print(f"unhealthy: no ping answer on http port {port}", file=sys.stderr)
        return 1
    print(f"healthy: {dict(zip(answer.get('key', []), answer.get('value', [])))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
