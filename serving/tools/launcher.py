"""Start the service in the background, wait until it answers, run something, stop it cleanly.

Paddle Serving may fork helper processes, so the service is started in its own session
(process group); it is stopped with SIGTERM to the service itself (which drains the requests in
flight), then anything left of the group is killed and the ports are waited on until they are
free. Used by `make demo`, the integration tests and the benchmarks.

Command line: `python -m serving.tools.launcher --model-dir DIR [--config FILE] [--http-port N]
[--rpc-port N] -- COMMAND ...` runs COMMAND while the service is up and exits with its status.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from serving.core.errors import PPTSMError
from serving.pipeline.healthcheck import ping

class LaunchError(PPTSMError, RuntimeError):
    """The service did not come up; the message includes the tail of its log."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A currently free loopback port (for tests running several services)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """A running service in its own process group; use as a context manager."""

    def __init__(self, model_dir: str | Path, config: str | Path = "pipeline_config/config.yml",
                 http_port: int = 18080, rpc_port: int = 9993, log_path: Optional[Path] = None,
                 extra_args: Sequence[str] = (), env: Optional[dict[str, str]] = None,
                 cwd: Optional[Path] = None) -> None:
        self.model_dir = Path(model_dir)
        self.config = Path(config)
        self.http_port = http_port
        self.rpc_port = rpc_port
        self.log_path = log_path or Path(f"/tmp/pptsm-service-{http_port}.log")
        self.extra_args = list(extra_args)
        self.env = env
        self.cwd = cwd  # the service's working directory (None: this process's)
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 180.0) -> "ServiceProcess":
        for port in (self.http_port, self.rpc_port):
            if not port_is_free(port):
                raise LaunchError(f"port {port} is already in use; stop the other service or "
                                  "choose another port")
        cmd = [sys.executable, "-m", "serving.pipeline.service", "--model-dir", str(self.model_dir),
               "--config", str(self.config), "--http-port", str(self.http_port),
               "--rpc-port", str(self.rpc_port), *self.extra_args]
        env = {**os.environ, **(self.env or {})}
        # First on the path, absolute: the service may run in another working directory.
        repo_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env.get("PYTHONPATH")]))
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=self.cwd, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LaunchError(f"service exited with status {self.process.returncode}:\n"
                                  f"{self.log_tail()}")
            if ping(self.http_port):
                return self
            time.sleep(0.5)
        self.stop()
        raise LaunchError(f"service not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        """SIGTERM to the service alone, so that it answers the requests in flight and then
        exits; SIGKILL to the group after `timeout` and for any leftovers; then wait for the
        ports."""
        if self.process is None:
            return None
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        try:  # workers that outlived the parent
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (
                port_is_free(self.http_port) and port_is_free(self.rpc_port)):
            time.sleep(0.2)
        code, self.process = self.process.returncode, None
        return code

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> "ServiceProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--config", default="pipeline_config/config.yml")
    parser.add_argument("--http-port", type=int, default=18080)
    parser.add_argument("--rpc-port", type=int, default=9993)
    args = parser.parse_args(argv)
    if not command:
        parser.error("give the command to run after --")
    service = ServiceProcess(args.model_dir, args.config, args.http_port, args.rpc_port)
    print(f"starting the service on http://127.0.0.1:{args.http_port} (log {service.log_path})",
          flush=True)
    try:
        service.start()
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return subprocess.call(command)
    finally:
        service.stop()
        print("service stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
