"""
A real Redis (or Valkey) server for the tests, on a unix socket in a temporary directory.

`--port 0` opens no TCP port at all, so tests never race for ports and never touch the
network. The binary is `$PICANTE_TEST_STORE_SERVER` if set, else `redis-server` or
`valkey-server` from `PATH` (`.ci/run` installs Debian's `redis-server`). A server that
cannot start fails the test: a green run must not hide a missing server.

The ACL users of the sharing guide (`docs/guides/sharing.md`, "ACLs for CI") are read from
the guide itself (`documented_acl_users`), so that the tests run the commands operators
are told to run, and a change to them is tested.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest


START_TIMEOUT = 10.0  # seconds for the server to answer PING
STOP_TIMEOUT = 5.0  # seconds for it to exit after SIGTERM, before SIGKILL
SHARING_GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "sharing.md"


def server_binary() -> str:
    """The server to run; fails the test if there is none."""
    binary = (
        os.environ.get("PICANTE_TEST_STORE_SERVER")
        or shutil.which("redis-server")
        or shutil.which("valkey-server")
    )
    if not binary:
        pytest.fail(
            "no redis-server or valkey-server on PATH: install one (apt-get install"
            " redis-server) or set PICANTE_TEST_STORE_SERVER to a server binary",
            pytrace=False,
        )
    return binary


class RedisServer:
    """One server process on `directory/redis.sock`; `start`, `kill` and start again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL that `RedisStore` and redis-py take: `unix:///…/redis.sock`."""
        return f"unix://{self.socket}"

    def url_as(self, user: AclUser) -> str:
        """The URL to connect as *user*: `unix://user:password@/…/redis.sock`."""
        name, password = (urllib.parse.quote(part, safe="") for part in (user.name, user.password))
        return f"unix://{name}:{password}@{self.socket}"

    def start(self) -> None:
        """Start the server and wait until it answers PING; fail the test otherwise."""
        log = self.directory / "server.log"
        options = {
            "port": "0",  # no TCP listener at all
            "unixsocket": str(self.socket),
            "unixsocketperm": "700",
            "save": "",
            "appendonly": "no",
            "dir": str(self.directory),
            "logfile": str(log),
        }
        binary = server_binary()
        arguments = [arg for name, value in options.items() for arg in (f"--{name}", value)]
        try:
            self.process = subprocess.Popen(
                [binary, *arguments],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
        except OSError as error:
            pytest.fail(f"cannot run the Redis server {binary}: {error}", pytrace=False)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = log.read_text(errors="replace") if log.exists() else "(no log)"
                pytest.fail(f"the Redis server did not start:\n{text}", pytrace=False)
            time.sleep(0.01)  # polling for readiness, bounded by the deadline

    def ping(self) -> bool:
        """Whether the server answers PING on its socket now."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(1.0)
                client.connect(str(self.socket))
                client.sendall(b"*1\r\n$4\r\nPING\r\n")
                return client.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def signal(self, number: signal.Signals) -> None:
        """Send *number* to the server (SIGSTOP freezes it, SIGCONT resumes it)."""
        assert self.process is not None
        self.process.send_signal(number)

    def kill(self) -> None:
        """SIGKILL the server and wait for it to be gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
            self.process = None

    def stop(self) -> None:
        """SIGTERM the server, wait, then SIGKILL it if it is still there."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        self.process = None


# -- the ACL users of the sharing guide -----------------------------------------------------


@dataclass(frozen=True)
class AclUser:
    """One `ACL SETUSER` command of the sharing guide, and the user it creates."""

    name: str
    password: str
    command: tuple[str, ...]
    """The command's words: `ACL`, `SETUSER`, the name, then its rules."""


def documented_acl_users() -> dict[str, AclUser]:
    """
    The users of the guide's "ACLs for CI" block, by name: `main-builds`, `pr-123` and
    `developers`, each with its command as the guide writes it (its continuation lines,
    indented there to fit the page, joined).
    """
    lines = SHARING_GUIDE.read_text(encoding="utf-8").splitlines()
    start = lines.index("### ACLs for CI")
    opening = next(n for n in range(start, len(lines)) if lines[n].startswith("```"))
    closing = lines.index("```", opening + 1)
    commands: list[list[str]] = []
    for line in lines[opening + 1 : closing]:
        if line.startswith("ACL SETUSER "):
            commands.append(line.split())
        else:
            assert commands, f"no command before {line!r}"
            assert line.startswith(" "), f"not a command, nor the rest of one: {line!r}"
            commands[-1].extend(line.split())
    users: dict[str, AclUser] = {}
    for words in commands:
        (password,) = [word[1:] for word in words if word.startswith(">")]
        users[words[2]] = AclUser(words[2], password, tuple(words))
    return users
