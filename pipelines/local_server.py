"""A real local Prefect server (``prefect server start``) in a child process: schedules fire
on it, unlike Prefect's temporary ephemeral server. Stdlib only, so it can start before Prefect
is imported and PREFECT_API_URL can point at it.

The server keeps its SQLite database and logs in ``data_dir`` (its PREFECT_HOME), binds to
``host`` (127.0.0.1 by default), and is stopped by PID: SIGTERM to its process group, then
SIGKILL after a grace period.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when the process that started it dies,
    even by SIGKILL, so a killed ``autoenc serve`` leaves no server holding its port (its own
    session keeps Ctrl-C in a terminal from reaching it twice). Elsewhere: a no-op."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ServerError(RuntimeError):
    """The local Prefect server could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` (an API URL ending in /api) answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class LocalServer:
    """Context manager: start ``prefect server start`` and wait until healthy; yield the API URL.

    Args:
        data_dir: the server's PREFECT_HOME (database ``prefect.db`` and logs), created if needed.
        host: bind address; 127.0.0.1 keeps it off the network.
        port: TCP port; 0 picks a free one.
        startup_timeout: seconds to wait for ``/api/health``.
        ui: serve the web UI too.
    """

    def __init__(self, data_dir: str | Path, host: str = "127.0.0.1", port: int = 4200, startup_timeout: float = 90.0, ui: bool = True) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.host, self.port = host, port or free_port(host)
        self.startup_timeout, self.ui = startup_timeout, ui
        self.proc: subprocess.Popen | None = None
        self.url = f"http://{host}:{self.port}/api"

    def start(self) -> str:
        if healthy(self.url, 0.5):
            raise ServerError(f"something already answers on {self.url}; set PREFECT_API_URL={self.url} to use it, or pick another port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
        env.update(PREFECT_HOME=str(self.data_dir), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED=str(self.ui).lower(),
                   # The server must know its own address: its UI asks the API at PREFECT_UI_API_URL
                   # (default http://127.0.0.1:4200/api, a wrong or foreign server on any other port).
                   PREFECT_API_URL=self.url, PREFECT_UI_API_URL=self.url, PREFECT_SERVER_API_HOST=self.host, PREFECT_SERVER_API_PORT=str(self.port))
        logfile = open(self.data_dir / "server.log", "ab")
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", self.host, "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        logfile.close()
        log.info("starting Prefect server pid %d on %s (data in %s)", self.proc.pid, self.url, self.data_dir)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise ServerError(f"prefect server exited with code {self.proc.returncode}:\n{tail}")
            if healthy(self.url):
                log.info("Prefect server healthy at %s", self.url)
                return self.url
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"prefect server did not become healthy within {self.startup_timeout:.0f}s (log: {self.data_dir / 'server.log'})")

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``grace`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        log.info("Prefect server pid %d stopped", self.proc.pid)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
