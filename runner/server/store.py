"""The server's durable state in one SQLite database (WAL) beside the run folders: jobs and their queue, the access
tokens (hashed), and the queue's pause switch.

Every write is a transaction committed before the call returns (synchronous=FULL), so a `kill -9` of the server
loses nothing it answered: a job it accepted is in the queue, a job it was running is found `running` at the next
start and queued again (`recover`). One connection, shared by the server's threads under a lock.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATABASE = "server.sqlite3"
FINAL = ("ok", "failed", "interrupted", "cancelled")  # a job in one of these states is over
TOKEN_PREFIX = "rnr_"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    owner TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    submitted REAL NOT NULL,
    started REAL,
    finished REAL,
    request TEXT NOT NULL,
    name TEXT NOT NULL,
    folder TEXT,
    error TEXT,
    hint TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority DESC, seq);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Job:
    id: str
    seq: int
    owner: str
    priority: int
    state: str  # queued | running | ok | failed | interrupted | cancelled
    submitted: float
    started: float | None
    finished: float | None
    request: dict
    name: str  # the workflow's name
    folder: str | None  # the run (or sweep) folder, relative to the server's --out
    error: str | None
    hint: str | None
    attempts: int
    cancel: bool

    @property
    def over(self) -> bool:
        return self.state in FINAL


@dataclass
class Token:
    name: str
    admin: bool
    created: float
    revoked: float | None


def digest(token: str) -> str:
    """What the database keeps of a token: its SHA-256 (tokens are 256 random bits: no salt or slow hash needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Store:
    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / DATABASE
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(sql, args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return cursor

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ jobs
    def add(self, owner: str, request: dict, name: str, priority: int = 0, job_id: str | None = None) -> Job:
        job_id = job_id or new_job_id()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
                self._db.execute("INSERT INTO jobs (id, seq, owner, priority, state, submitted, request, name) "
                                 "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                                 (job_id, seq, owner, priority, time.time(), json.dumps(request), name))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def jobs(self, owner: str | None = None, limit: int = 200, state: str = "all") -> list[Job]:
        """Queued and running jobs in queue order (state "active" or "all"), then the latest `limit` finished ones,
        newest first (state "done" or "all")."""
        where, args = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
        joined = "AND" if where else "WHERE"
        active = self._rows(f"SELECT * FROM jobs {where} {joined} state IN ('queued', 'running') "
                            "ORDER BY state = 'queued', priority DESC, seq", args) if state in ("all", "active") else []
        done = self._rows(f"SELECT * FROM jobs {where} {joined} state NOT IN ('queued', 'running') "
                          "ORDER BY seq DESC LIMIT ?", (*args, limit)) if state in ("all", "done") else []
        return [_job(row) for row in active + done]

    def position(self, job: Job) -> int | None:
        """1 for the next job to start; None for a job not queued."""
        if job.state != "queued":
            return None
        ahead = self._rows("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND (priority > ? OR (priority = ? AND seq < ?))",
                           (job.priority, job.priority, job.seq))[0][0]
        return ahead + 1

    def queued_count(self, owner: str) -> int:
        return self._rows("SELECT COUNT(*) FROM jobs WHERE owner = ? AND state IN ('queued', 'running')", (owner,))[0][0]

    def take(self) -> Job | None:
        """The next queued job (highest priority, then first come), marked running; None when there is none."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority DESC, seq LIMIT 1").fetchone()
            if row is None:
                self._db.execute("COMMIT")
                return None
            self._db.execute("UPDATE jobs SET state = 'running', started = ?, attempts = attempts + 1 WHERE id = ?",
                             (time.time(), row["id"]))
            self._db.execute("COMMIT")
        return self.get(row["id"])

    def set_folder(self, job_id: str, folder: str) -> None:
        self._write("UPDATE jobs SET folder = ? WHERE id = ?", (folder, job_id))

    def finish(self, job_id: str, state: str, error: str | None = None, hint: str | None = None) -> None:
        self._write("UPDATE jobs SET state = ?, finished = ?, error = ?, hint = ? WHERE id = ?",
                    (state, time.time(), error, hint or None, job_id))

    def requeue(self, job_id: str) -> None:
        """Back into the queue at its old place (a server stopping while it ran: the next start resumes it)."""
        self._write("UPDATE jobs SET state = 'queued', started = NULL WHERE id = ? AND state = 'running'", (job_id,))

    def cancel(self, job_id: str) -> str:
        """A queued job is cancelled at once ('cancelled'); a running one is asked to stop ('stopping'); else its state."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            state = self._db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            if state == "queued":
                self._db.execute("UPDATE jobs SET state = 'cancelled', finished = ?, cancel = 1 WHERE id = ?",
                                 (time.time(), job_id))
                state = "cancelled"
            elif state == "running":
                self._db.execute("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))
                state = "stopping"
            self._db.execute("COMMIT")
        return state

    def cancelled(self, job_id: str) -> bool:
        rows = self._rows("SELECT cancel FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def recover(self) -> list[Job]:
        """Jobs a stopped or killed server left running: queued again (they resume from the cache), in their order."""
        running = [_job(row) for row in self._rows("SELECT * FROM jobs WHERE state = 'running' ORDER BY seq")]
        for job in running:
            if job.cancel:
                self.finish(job.id, "cancelled", "cancelled while the server stopped")
            else:
                self.requeue(job.id)
        return running

    # -------------------------------------------------------------- settings
    def setting(self, key: str, default: str = "") -> str:
        rows = self._rows("SELECT value FROM settings WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set_setting(self, key: str, value: str) -> None:
        self._write("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value))

    # ---------------------------------------------------------------- tokens
    def add_token(self, name: str, admin: bool) -> str:
        """A new token for NAME (returned once, never stored in clear); ValueError when NAME has a live token."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT revoked FROM tokens WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is None:
                self._db.execute("ROLLBACK")
                raise ValueError(f"'{name}' already has a token")
            self._db.execute("INSERT OR REPLACE INTO tokens (name, digest, admin, created, revoked) VALUES (?, ?, ?, ?, NULL)",
                             (name, digest(token), int(admin), time.time()))
            self._db.execute("COMMIT")
        return token

    def tokens(self) -> list[Token]:
        return [Token(row["name"], bool(row["admin"]), row["created"], row["revoked"])
                for row in self._rows("SELECT * FROM tokens ORDER BY name")]

    def revoke(self, name: str) -> bool:
        return self._write("UPDATE tokens SET revoked = ? WHERE name = ? AND revoked IS NULL",
                           (time.time(), name)).rowcount > 0

    def live_tokens(self) -> int:
        return self._rows("SELECT COUNT(*) FROM tokens WHERE revoked IS NULL")[0][0]

    def user(self, token: str) -> Token | None:
        rows = self._rows("SELECT * FROM tokens WHERE digest = ? AND revoked IS NULL", (digest(token),))
        return Token(rows[0]["name"], bool(rows[0]["admin"]), rows[0]["created"], None) if rows else None


def new_job_id() -> str:
    return str(uuid.uuid4())


def _job(row: sqlite3.Row) -> Job:
    data: dict[str, Any] = dict(row)
    data["request"] = json.loads(data["request"])
    data["cancel"] = bool(data["cancel"])
    return Job(**data)
