"""Container health check: the service's readiness route, asked on the port it serves on.

    python -m serving.pipeline.healthcheck        # exit 0: ready; 1: not answering (or not ready)

Docker's HEALTHCHECK runs it inside the container (the image has no curl; Kubernetes asks the
routes itself with httpGet). It sends `GET /v2/health/ready` to 127.0.0.1, which the front end
answers from its own state (serving.pipeline.health): 200 once the model is loaded, warmed up
and the pipeline answers its pings. The port is
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
READY_PATH = "/v2/health/ready"  # serving.pipeline.openapi.READY_PATH (this module stays light)


def ping(http_port: int, timeout: float = 2.0) -> Optional[dict]:
    """The readiness answer ({"ready": true, "model": ...}), or None if the service is not up
    or not ready."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{READY_PATH}",
                                    timeout=timeout) as response:
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):  # HTTPError (503) included
        return None
    return answer if answer.get("ready") is True else None


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
        print(f"unhealthy: not ready on http port {port} ({READY_PATH})", file=sys.stderr)
        return 1
    print(f"healthy: {answer.get('model')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
