"""A throwaway PostgreSQL server, for tests and ``perf`` runs of several clouds on one store.

Debian's ``postgresql`` package gives ``initdb`` and ``postgres``
(``/usr/lib/postgresql/*/bin``); this makes a cluster in a temporary directory,
starts it on a free loopback port with its Unix socket in that directory, and
removes it all at the end, as the project starts Mosquitto. PostgreSQL refuses
to run as root, so as root (CI) the cluster belongs to the ``postgres`` system
user the package creates and both programs run as it (``runuser``).

    with PostgresServer() as url:       # postgresql://impfactory@127.0.0.1:PORT/impfactory
        cloud = Cloud(url, broker_url)
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from impfactory.errors import ImpFactoryError

USER = "impfactory"
DATABASE = "impfactory"
START_TIMEOUT = 30.0


class PostgresUnavailable(ImpFactoryError, RuntimeError):
    """PostgreSQL is not installed here, or would not start."""


def find_postgres() -> Path | None:
    """The bin directory of the newest PostgreSQL installed (None: none)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL cluster of our own; ``url`` while it runs."""

    def __init__(self) -> None:
        self.bin = find_postgres()
        self.url = ""
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _as_owner(self, args: list[str]) -> list[str]:
        """Run as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
        if os.geteuid() != 0:
            return args
        return ["runuser", "-u", "postgres", "--", *args]

    def start(self) -> str:
        if self.bin is None:
            raise PostgresUnavailable("PostgreSQL is not installed (Debian: apt-get install "
                                      "postgresql)")
        self._dir = tempfile.TemporaryDirectory(prefix="impfactory-pg-")
        root = Path(self._dir.name)
        data = root / "data"
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as err:
                raise PostgresUnavailable("running as root needs the 'postgres' user "
                                          "(Debian's postgresql package makes it)") from err
            os.chown(root, owner.pw_uid, owner.pw_gid)
        init = subprocess.run(
            self._as_owner([str(self.bin / "initdb"), "-D", str(data), "-U", USER,
                            "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"]),
            capture_output=True, text=True, check=False)
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        port = _free_port()
        self._proc = subprocess.Popen(
            self._as_owner([str(self.bin / "postgres"), "-D", str(data), "-p", str(port),
                            "-k", str(root), "-c", "listen_addresses=127.0.0.1",
                            "-c", "fsync=off", "-c", "synchronous_commit=off",
                            "-c", "full_page_writes=off", "-c", "max_connections=100"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready(port)
        createdb = self.bin / "createdb"
        command = self._as_owner([str(createdb) if createdb.exists() else "createdb",
                                  "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE])
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # the port opens before the server takes connections ("starting up")
            created = subprocess.run(command, capture_output=True, text=True, check=False)
            if created.returncode == 0:
                break
            if "starting up" not in created.stderr or time.monotonic() > deadline:
                self.stop()
                raise PostgresUnavailable(f"createdb failed: {created.stderr.strip()[-500:]}")
            time.sleep(0.1)
        self.url = f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}"
        return self.url

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                self.stop()
                raise PostgresUnavailable(f"postgres exited: {err.strip()[-500:]}")
            with socket.socket() as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise PostgresUnavailable(f"postgres did not listen within {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown; fast enough here
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
