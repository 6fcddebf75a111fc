"""Running a page's shell blocks as a user types them: what the README's and the
guide's tests share.

A page's ``sh`` blocks are read from the page itself, so a renamed option or a step
that no longer works fails its test. This module reads the lines (``&&`` chains and
trailing comments kept), shrinks long runs, fills the page's placeholder addresses
with the real ones, runs the commands that serve until stopped in the background
(reading the first line that says where they listen) and stops them, and receives
webhooks. Each page's test keeps only its own stand-ins.
"""

from __future__ import annotations

import http.server
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "impfactory.tools.cli"]
#: Placeholders a page writes for what a served cloud prints on its first line.
API_PLACEHOLDER = "http://127.0.0.1:8080/v5"
BROKER_PLACEHOLDER = "mqtt://127.0.0.1:PORT"
PTY_PLACEHOLDER = "/dev/pts/N"


@dataclass
class ShellLine:
    """One command line of a shell block: its ``&&`` chain and its trailing comment."""

    chain: list[list[str]]
    comment: str
    text: str

    @property
    def words(self) -> list[str]:
        """The whole line as one command (a line without ``&&``)."""
        assert len(self.chain) == 1, f"`{self.text}` chains commands"
        return self.chain[0]


def shell_lines(page: Path) -> list[ShellLine]:
    """Every command line of ``page``'s ``sh`` blocks, continuation lines joined."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
        for raw in block.replace("\\\n", " ").splitlines():
            words = shlex.split(raw, comments=True)
            if not words:
                continue
            comment = raw.partition("  #")[2].strip() if "  #" in raw else ""
            chain: list[list[str]] = [[]]
            for word in words:
                if word == "&&":
                    chain.append([])
                else:
                    chain[-1].append(word)
            lines.append(ShellLine(chain, comment, raw.strip()))
    return lines


def shrink(words: list[str], table: dict[tuple[str, ...], dict[str, str]],
           add_missing: bool = False) -> list[str]:
    """``words`` with ``table``'s values for its subcommand: a larger value lowered, and
    with ``add_missing`` a missing option added (a default the page leaves implicit)."""
    for key, options in table.items():
        if tuple(words[1:1 + len(key)]) != key:
            continue
        words = list(words)
        for option, value in options.items():
            if option not in words:
                if add_missing:
                    words += [option, value]
            elif float(words[words.index(option) + 1]) > float(value):
                words[words.index(option) + 1] = value
    return words


def fill(words: list[str], names: dict[str, str]) -> list[str]:
    """Placeholders replaced by the real addresses; ``--api-port N`` becomes a free port
    (the served cloud's first line then says which)."""
    out = []
    for i, word in enumerate(words):
        if i and words[i - 1] == "--api-port":
            word = "0"
        for name, value in names.items():
            word = word.replace(name, value)
        out.append(word)
    return out


@dataclass
class Servers:
    """Commands that serve until stopped, each started in the background; ``stop``
    sends SIGTERM and gives every exit status (a clean stop is 0)."""

    log_dir: Path
    running: list[tuple[str, subprocess.Popen[str]]] = field(default_factory=list)

    def start(self, words: list[str], cwd: Path, names: dict[str, str],
              env: dict[str, str] | None = None) -> str:
        """Start ``impfactory …``; learn the addresses its first line names into
        ``names``, and return that line."""
        log = (self.log_dir / f"server{len(self.running)}.log").open("w")
        proc = subprocess.Popen([*CLI, *words[1:]], stdout=subprocess.PIPE, stderr=log,
                                text=True, cwd=cwd, env=env)
        self.running.append((shlex.join(words), proc))
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, f"{shlex.join(words)} printed nothing: {log.name}"
        stdout = proc.stdout
        threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()
        if first.startswith("port: "):  # bench emulate: the pty it serves
            names[PTY_PLACEHOLDER] = first.split(" ", 1)[1].strip()
        else:
            doc = json.loads(first)
            names[API_PLACEHOLDER] = doc["api"]
            names[BROKER_PLACEHOLDER] = doc["broker"]
        return first

    def stop(self) -> list[tuple[str, int]]:
        codes = []
        for text, proc in reversed(self.running):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes.append((text, proc.wait(timeout=30)))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append((text, proc.wait()))
        self.running.clear()
        return codes


class Hooks(http.server.ThreadingHTTPServer):
    """Webhook receiver on a free loopback port: counts each event's POSTs and wakes a
    waiter. ``start``/``close`` run it on a thread of its own."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.arrived = threading.Condition()
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.end_headers()
                with hooks.arrived:
                    hooks.events.append(str(json.loads(body or b"{}").get("event", "")))
                    hooks.arrived.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def start(self) -> Hooks:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def wait_for(self, event: str, count: int, timeout: float = 60.0) -> int:
        with self.arrived:
            self.arrived.wait_for(lambda: self.events.count(event) >= count, timeout)
            return self.events.count(event)
