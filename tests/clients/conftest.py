"""Shared fixtures for the real-client suites: start the real `ferry` binary on free ports.

Every suite drives the binary named by $FERRY_BIN (the Makefile passes target/debug/ferry) in a
fresh temporary data directory, with every door on 127.0.0.1 port 0. The server logs one
`listening door=<name> addr=<host:port>` line per door; the fixture reads those lines to learn
the ports, then waits for /readyz. Nothing here uses a fixed port.
"""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r'listening.*door="?(\w+)"?.*addr=([0-9.]+:\d+)')
START_TIMEOUT_S = 60
ALL_DOORS = ("http", "aws", "kafka")


def ferry_bin() -> str:
    return os.environ.get("FERRY_BIN", str(REPO / "target" / "debug" / "ferry"))


class Ferry:
    """A running `ferry serve` child process and the addresses of its doors."""

    def __init__(self, data_dir: Path, extra_args=(), env=None):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self.doors = {}
        self.log_lines = []

    def start(self, doors=("http",)):
        args = [ferry_bin(), "serve", "--data-dir", str(self.data_dir), "--log-format", "text"]
        # Every door gets a free port, also the ones this test does not use: servers of tests
        # running side by side must never fight over a default port.
        # A test that needs a fixed address again (a restart on the same port) passes it itself.
        for door in ALL_DOORS:
            if f"--{door}-addr" not in self.extra_args:
                args += [f"--{door}-addr", "127.0.0.1:0"]
        args += self.extra_args
        env = dict(os.environ, NO_COLOR="1", RUST_LOG_STYLE="never")
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.doors = {}
        found = threading.Event()
        wanted = set(doors)

        def pump():
            for line in self.proc.stdout:
                self.log_lines.append(line)
                m = LISTENING.search(line)
                if m:
                    self.doors[m.group(1)] = m.group(2)
                    if wanted <= set(self.doors):
                        found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(START_TIMEOUT_S):
            self.kill()
            raise RuntimeError("ferry did not report its doors:\n" + "".join(self.log_lines))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if requests.get(self.http_url + "/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("ferry never became ready:\n" + "".join(self.log_lines))

    @property
    def http_url(self) -> str:
        return f"http://{self.doors['http']}"

    def url(self, door: str) -> str:
        return f"http://{self.doors[door]}"

    def kill(self):
        """SIGKILL: the crash case."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self):
        """SIGTERM: the graceful case. Returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=60)
        return self.proc.returncode if self.proc else None


@pytest.fixture
def ferry_factory(tmp_path):
    """Returns start(doors=..., extra_args=..., env=..., data_dir=...) -> Ferry; stops all at teardown."""
    started = []

    def start(doors=("http",), extra_args=(), env=None, data_dir=None):
        f = Ferry(data_dir or (tmp_path / "data"), extra_args, env)
        started.append(f)
        return f.start(doors)

    yield start
    for f in started:
        f.kill()
