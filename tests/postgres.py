"""A throwaway PostgreSQL server for the tests (SPEC §15): started once per session, a database per test.

The server is Debian's (`scripts/ensure-postgres.sh` installs it). As root it runs as the `postgres`
user (PostgreSQL refuses root), in a directory of its own under /tmp (pytest's tmp dirs sit under a
0700 root directory that user cannot enter), on 127.0.0.1 at a port the OS picked, with its socket
in that directory and fsync on. It is stopped by its PID at the end. `PEERING_TEST_PG_DSN` points
the tests at an external server instead (that one is never restarted or stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from peering.store.acl_sqlite import SqliteAclStore
from peering.store.postgres.acl import PostgresAclStore
from peering.store.postgres.store import PostgresStore
from peering.store.sqlite import SqliteStore

MIN_MAJOR = 15
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class PostgresMissingError(Exception):
    """No PostgreSQL server binaries (15 or newer) on this machine; the text says what to run."""


def _major(bindir: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return None
    found = re.search(r"\(PostgreSQL\) (\d+)", out)
    return int(found.group(1)) if found else None


def find_bindir() -> Path:
    """The newest directory holding initdb, pg_ctl and postgres of major 15 or newer.

    Raises:
        PostgresMissingError: there is none.
    """
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    config = shutil.which("pg_config")
    if config:
        out = subprocess.run([config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
        candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    best: tuple[int, Path] | None = None
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            major = _major(bindir)
            if major is not None and major >= MIN_MAJOR and (best is None or major > best[0]):
                best = (major, bindir)
    if best is None:
        raise PostgresMissingError(
            f"no PostgreSQL server {MIN_MAJOR} or newer is installed (run scripts/ensure-postgres.sh as root)"
        )
    return best[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS just handed out (free right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion on a loop of its own, in a thread (safe from sync fixtures and from
    inside a running loop alike)."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="postgres-admin")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0] if result else None


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@dataclass
class PostgresServer:
    """One PostgreSQL server the tests may use (see the module docstring)."""

    admin_dsn: str  # the `postgres` database, as superuser
    bindir: Path | None = None  # None: an external server, not ours to restart or stop
    root: Path | None = None  # data dir, socket and log live here
    port: int = 0
    started_in: float = 0.0  # seconds from initdb to accepting connections
    _pid: int | None = field(default=None, repr=False)

    @classmethod
    def start_new(cls) -> PostgresServer:
        """initdb into a fresh directory and start the server; the caller must `stop()` it.

        Raises:
            PostgresMissingError: no server is installed.
        """
        bindir = find_bindir()
        reap_orphans()
        began = time.monotonic()
        root = Path(tempfile.mkdtemp(prefix=_PREFIX))
        (root / "owner").write_text(str(os.getpid()))  # for `reap_orphans`, should this process die unclean
        server = cls(admin_dsn="", bindir=bindir, root=root)
        try:
            if os.geteuid() == 0:
                shutil.chown(root, "postgres", "postgres")
            server._run(
                "initdb", "-D", str(root / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync", "--no-instructions",
            )  # fmt: skip
            server._start_on_a_free_port()
        except BaseException:
            server.stop()
            raise
        server.started_in = time.monotonic() - began
        return server

    @classmethod
    def external(cls, dsn: str) -> PostgresServer:
        """A server someone else runs (`PEERING_TEST_PG_DSN`): used, never restarted or stopped."""
        return cls(admin_dsn=dsn)

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while it runs (our own server only)."""
        return self._pid

    def _as_postgres(self, *argv: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)

    def _run(self, tool: str, *args: str) -> None:
        assert self.bindir is not None
        done = subprocess.run(
            self._as_postgres(str(self.bindir / tool), *args),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 10,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def _start_on_a_free_port(self) -> None:
        # another process may take the port between our probe and the server's bind: try a few
        for attempt in range(3):
            try:
                self._start(free_port())
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def _start(self, port: int) -> None:
        assert self.root is not None
        options = (
            f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
        )
        log = self.root / "log"
        self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(log), "-w", "-t", str(int(START_TIMEOUT)),
                  "-o", options, "start")  # fmt: skip
        self.port = port
        self.admin_dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._pid = int((self.root / "data" / "postmaster.pid").read_text().split()[0])

    def start(self) -> None:
        """Start our server again, on the port it had (after `stop_server`)."""
        if self.bindir is None:
            raise RuntimeError("an external server (PEERING_TEST_PG_DSN) is not ours to start")
        if self._pid is None:
            self._start(self.port)

    def restart(self) -> None:
        """Stop the server (fast shutdown: clients are cut off) and start it again on the same port."""
        if self.bindir is None:
            raise RuntimeError("an external server (PEERING_TEST_PG_DSN) is not ours to restart")
        self.stop_server()
        self.start()

    def stop_server(self, sig: signal.Signals = signal.SIGINT) -> None:
        """Stop the postmaster by its PID (SIGINT: fast shutdown) and wait until it has exited."""
        pid, self._pid = self._pid, None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT
        while running(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_TIMEOUT
            time.sleep(0.02)  # the postmaster is not our child: nothing to wait on but its state

    def stop(self) -> None:
        """Stop our server and remove its directory (no-op for an external server)."""
        self.stop_server()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def dsn(self, database: str) -> str:
        """The DSN of one database on this server."""
        return _with_database(self.admin_dsn, database)

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create_database(self) -> str:
        """A new, empty database; returns its DSN."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        run_async(self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0'))
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        """Drop a database made by `create_database` (cutting off whoever is still connected)."""
        name = urlsplit(dsn).path.lstrip("/")
        run_async(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_PREFIX = "peering-pg-"


def reap_orphans() -> None:
    """Stop (by PID) and remove the servers of test sessions that died without stopping theirs (a killed
    pytest runs no finalizers). A session still running is left alone, as is anything not ours."""
    for root in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            owner = int((root / "owner").read_text())
        except (OSError, ValueError):
            continue  # being created right now, or not one of ours
        if running(owner):
            continue
        pid: int | None = None
        try:
            pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
            if str(root) not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                pid = None  # the PID was reused by something else
        except (OSError, ValueError, IndexError):
            pid = None  # no server left running there
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown: nothing there is worth keeping
            deadline = time.monotonic() + STOP_TIMEOUT
            while running(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        shutil.rmtree(root, ignore_errors=True)


def running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie left for a non-reaping init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A server for the session: the external one if `PEERING_TEST_PG_DSN` is set, else our own.

    Raises:
        PostgresMissingError: no server is installed.
    """
    external = os.environ.get("PEERING_TEST_PG_DSN")
    if external:
        yield PostgresServer.external(external)
        return
    server = PostgresServer.start_new()
    try:
        yield server
    finally:
        server.stop()


BACKENDS = ("sqlite", "postgres")


@dataclass
class Backend:
    """Where a store contract test keeps its data: a SQLite file or a fresh PostgreSQL database."""

    name: str
    path: Path  # the SQLite file (unused by PostgreSQL)
    dsn: str = ""  # the PostgreSQL database (empty for SQLite)

    async def open(self) -> SqliteStore | PostgresStore:
        """A store on this backend's database (a new one on each call, over the same data)."""
        if self.name == "sqlite":
            return await SqliteStore.open(self.path)
        return await PostgresStore.open(self.dsn)

    def acl(self, store: SqliteStore | PostgresStore) -> SqliteAclStore | PostgresAclStore:
        """The ACL store over `store`'s database."""
        return SqliteAclStore(store) if isinstance(store, SqliteStore) else PostgresAclStore(store)

    async def count(self, table: str, where: str = "TRUE", *args: Any) -> int:
        """Rows of `table` as another connection sees them (so: committed ones)."""
        if self.name == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                marks = re.sub(r"\$\d+", "?", where)
                return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {marks}", args).fetchone()[0])  # noqa: S608
        other = await asyncpg.connect(self.dsn)
        try:
            return int(await other.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *args))  # noqa: S608
        finally:
            await other.close()


def backend_for(name: str, tmp_path: Path, postgres_dsn: Callable[[], str]) -> Backend:
    """The backend named `name`; `postgres_dsn` is asked only for PostgreSQL (so SQLite needs no server)."""
    return Backend(name, tmp_path / "p.db", postgres_dsn() if name == "postgres" else "")
