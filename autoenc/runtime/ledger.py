"""The job ledger: which inputs were denoised, from which content, with which model, and which
files a running job has claimed.

One SQLite file per job state folder (default ``OUTPUT_DIR/.autoenc/ledger.sqlite``), in WAL
mode so overlapping runs and batch tasks in other processes share it safely.

- ``done``: relative path -> size, mtime (ns), sha256 of the input bytes, model identity, output
  size, run id, the ``host:pid`` that wrote it and how many times it was written. A file is skipped when its size and mtime match and its model identity matches
  and the output still exists; when only the mtime changed, the content hash decides.
- ``claims``: relative path -> run id, host, pid, process start time, lease expiry (unix s).
  A run claims a batch before touching it, so two overlapping runs never process one file twice.
  A claim is stale (taken over) when its lease expired, or when its process on this host is gone
  (a SIGKILLed run does not block later runs for the lease time).

Torch-free and Prefect-free.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATE_DIRNAME = ".autoenc"  # inside OUTPUT_DIR unless a state folder is given
LEDGER_NAME = "ledger.sqlite"
HOST = socket.gethostname()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS done (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT, model_id TEXT,
    output_size INTEGER, run_id TEXT, finished_at REAL, times INTEGER DEFAULT 1, worker TEXT);
CREATE TABLE IF NOT EXISTS claims (
    path TEXT PRIMARY KEY, run_id TEXT, host TEXT, pid INTEGER, pid_start INTEGER, expires_at REAL);
"""


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def settings_tag(strength: float = 1.0, ensemble: bool = False) -> str:
    """What image settings that change the outputs add to a model identity
    (``<registry name>:<first 16 hex of the .onnx sha256>``, :attr:`OnnxModel.identity`):
    ``@strength<K>`` for a strength other than 1 (K exactly, as Python writes the float),
    ``+ensemble`` for the flip/rotation ensemble; nothing for the defaults."""
    return ("" if strength == 1 else f"@strength{float(strength)!r}") + ("+ensemble" if ensemble else "")


def _pid_start(pid: int) -> int | None:
    """Process start time in clock ticks since boot (Linux /proc), to tell a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int, start: int | None) -> bool:
    """Whether ``pid`` on this host is still the process that was started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _pid_start(pid)
    return start is None or now is None or now == start


@dataclass(frozen=True)
class DoneEntry:
    size: int
    mtime_ns: int
    sha256: str
    model_id: str
    output_size: int
    run_id: str


class LedgerError(Exception):
    """The ledger cannot be used; the message names its path and what to do."""


def check_ledger(state_dir: str | Path, timeout: float = 60.0) -> str:
    """Before a job touches anything: the state folder can be created and written (a 4 KiB
    probe, so a full disk shows), the ledger opens, passes SQLite's quick check and grants a
    write lock within ``timeout`` seconds. A corrupt ledger is moved aside (never deleted) as
    ``ledger.sqlite.corrupt-<unix time>`` and a new one is started: the job redoes what it
    cannot prove done. Returns a note ("" or what was set aside); raises :class:`LedgerError`."""
    state = Path(state_dir)
    path = state / LEDGER_NAME
    try:
        state.mkdir(parents=True, exist_ok=True)
        probe = state / f".probe-{os.getpid()}"
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        raise LedgerError(f"cannot write the job's state folder {state}: {exc.strerror or exc}; free space or fix permissions there, or give --state-dir") from None
    note = ""
    for attempt in (1, 2):
        try:
            with Ledger(state, timeout=timeout) as ledger:
                if ledger.db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise sqlite3.DatabaseError("quick_check failed")
                ledger.db.execute("BEGIN IMMEDIATE")
                ledger.db.execute("ROLLBACK")
            return note
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise LedgerError(f"the ledger {path} stayed locked by another process for {timeout:.0f} s: is another run of this job still writing? Let it finish, or stop it") from None
            if "full" in str(exc):
                raise LedgerError(f"the ledger {path} cannot grow: {exc}; free space there, or give --state-dir") from None
            if attempt == 2 or "readonly" in str(exc) or "unable to open" in str(exc):
                raise LedgerError(f"the ledger {path} cannot be used: {exc}; fix permissions there, or give --state-dir") from None
            note = _set_aside(path, exc)
        except sqlite3.DatabaseError as exc:  # not a database, malformed, failed check
            if attempt == 2:
                raise LedgerError(f"the ledger {path} cannot be used even after setting it aside: {exc}") from None
            note = _set_aside(path, exc)
    return note


def _set_aside(path: Path, exc: Exception) -> str:
    """Move a broken ledger (and its WAL/SHM files) aside; returns what was done."""
    stamp = int(time.time())
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(path.with_name(f"{path.name}.corrupt-{stamp}{suffix}"))
    note = f"the ledger {path} was unreadable ({exc}); moved aside as {path.name}.corrupt-{stamp} and started anew: files it recorded are redone"
    log.warning(note)
    return note


def _use_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Put the ledger in WAL mode, waiting up to ``timeout`` seconds for it. Two processes that
    open a new ledger together race for this switch, and SQLite answers the loser "database is
    locked" at once, without its busy wait; so retry (5..100 ms apart) like the busy wait would."""
    deadline, pause = time.monotonic() + timeout, 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.1)


class Ledger:
    """Open (creating if needed) the ledger in ``state_dir``.

    Args:
        state_dir: folder holding ``ledger.sqlite``.
        timeout: seconds to wait for another process's write lock.
    """

    def __init__(self, state_dir: str | Path, timeout: float = 60.0) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.state_dir / LEDGER_NAME
        self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        _use_wal(self.db, timeout)
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.pid, self.pid_start = os.getpid(), _pid_start(os.getpid())

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- done -------------------------------------------------------------------------------
    def entry(self, rel: str) -> DoneEntry | None:
        row = self.db.execute("SELECT size, mtime_ns, sha256, model_id, output_size, run_id FROM done WHERE path=?", (rel,)).fetchone()
        return DoneEntry(*row) if row else None

    def entries(self) -> dict[str, DoneEntry]:
        rows = self.db.execute("SELECT path, size, mtime_ns, sha256, model_id, output_size, run_id FROM done")
        return {r[0]: DoneEntry(*r[1:]) for r in rows}

    def workers(self) -> dict[str, str]:
        """{path: "host:pid"} of the process that last wrote each file."""
        return dict(self.db.execute("SELECT path, worker FROM done").fetchall())

    def times_done(self, rel: str) -> int:
        """How many times ``rel`` has been written (1 after the first run; +1 per redo)."""
        row = self.db.execute("SELECT times FROM done WHERE path=?", (rel,)).fetchone()
        return row[0] if row else 0

    def record(self, rel: str, *, size: int, mtime_ns: int, sha256: str, model_id: str, output_size: int, run_id: str) -> None:
        """Mark ``rel`` written from this content with this model, and drop its claim."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO done(path, size, mtime_ns, sha256, model_id, output_size, run_id, finished_at, worker) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, sha256=excluded.sha256, "
                "model_id=excluded.model_id, output_size=excluded.output_size, run_id=excluded.run_id, "
                "finished_at=excluded.finished_at, times=done.times+1, worker=excluded.worker",
                (rel, size, mtime_ns, sha256, model_id, output_size, run_id, time.time(), f"{HOST}:{self.pid}"),
            )
            self.db.execute("DELETE FROM claims WHERE path=? AND run_id=?", (rel, run_id))

    def touch(self, rel: str, *, size: int, mtime_ns: int) -> None:
        """The file was touched but its content is unchanged: remember the new stat."""
        self.db.execute("UPDATE done SET size=?, mtime_ns=? WHERE path=?", (size, mtime_ns, rel))

    # -- claims -----------------------------------------------------------------------------
    def _stale(self, host: str, pid: int, pid_start: int | None, expires_at: float, now: float) -> bool:
        if expires_at < now:
            return True
        return host == HOST and not process_alive(pid, pid_start)

    def claim(self, rels: list[str], run_id: str, lease_seconds: float) -> tuple[list[str], dict[str, str]]:
        """Atomically claim ``rels`` for ``run_id``. Returns (claimed, {busy path: holder run id});
        claims held by expired leases or dead processes on this host are taken over."""
        now = time.time()
        claimed, busy = [], {}
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for rel in rels:
                row = self.db.execute("SELECT run_id, host, pid, pid_start, expires_at FROM claims WHERE path=?", (rel,)).fetchone()
                if row and row[0] != run_id and not self._stale(row[1], row[2], row[3], row[4], now):
                    busy[rel] = row[0]
                    continue
                if row and row[0] != run_id:
                    log.info("taking over stale claim on %s from run %s", rel, row[0])
                self.db.execute(
                    "INSERT OR REPLACE INTO claims(path, run_id, host, pid, pid_start, expires_at) VALUES (?,?,?,?,?,?)",
                    (rel, run_id, HOST, self.pid, self.pid_start, now + lease_seconds),
                )
                claimed.append(rel)
        return claimed, busy

    def renew(self, rels: list[str], run_id: str, lease_seconds: float) -> None:
        """Extend this run's claims on ``rels`` by ``lease_seconds`` from now."""
        exp = time.time() + lease_seconds
        self.db.executemany("UPDATE claims SET expires_at=? WHERE path=? AND run_id=?", [(exp, r, run_id) for r in rels])

    def release(self, rels: list[str], run_id: str) -> None:
        self.db.executemany("DELETE FROM claims WHERE path=? AND run_id=?", [(r, run_id) for r in rels])

    def claims(self) -> dict[str, str]:
        """{path: run id} of every claim currently recorded (live or stale)."""
        return dict(self.db.execute("SELECT path, run_id FROM claims").fetchall())
