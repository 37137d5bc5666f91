"""Read records appended in the background, in batches (group commit for the access log).

A read's record used to be appended in the read's own transaction, which made the chain
append (head row update, record and patient inserts, commit) most of a read's cost. Reads
now hand their records to this writer and are served at once; a thread appends whatever
has queued up in one transaction, so a busy server appends hundreds of records per commit.

What this trades, and what it keeps (decision record ``docs/decisions/read-audit-writer.md``):

- A record is built when the read is served (its ``recorded`` time is the access time);
  its place in the chain (``seq``) is given when the batch is appended.
- Fail closed still holds for the log's health: while the writer cannot append (database
  down, chain head missing), or while too much is queued, new reads are refused with
  :class:`~renkei.audit.errors.AuditError` (served as a 500 that nothing was served).
  Records that failed to append stay queued and are retried, in order.
- The records of reads served in the last moments before the *process* is killed (``kill
  -9``, power loss) can be lost: at most what is queued, normally a few milliseconds'
  worth. A clean shutdown drains the queue. Reads on PostgreSQL already accepted the same
  bound for a database crash (``synchronous_commit = off``); writes are never deferred.
- Readers of the log in this process (AuditEvent, ``$disclosure``) call :meth:`drain`
  first, so an auditor sees every access served before the question; a write takes the
  queued reads (:meth:`take`) and appends them ahead of its own records.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy.orm import Session

from renkei.audit.errors import AuditError

log = logging.getLogger(__name__)

#: records appended in one transaction at most
BATCH = 200
#: queued records beyond which reads wait (then are refused): the writer is far behind
MAX_QUEUED = 20_000
#: how long a read waits for room in a full queue before it is refused
FULL_WAIT_S = 2.0
#: pause after a failed append before the next try (doubles up to RETRY_MAX_S)
RETRY_S = 0.05
RETRY_MAX_S = 2.0
#: after the first record of a batch, wait this long for more (fewer, larger commits)
LINGER_S = 0.05
#: an idle writer thread ends after this long (the next record starts another)
IDLE_EXIT_S = 5.0

QUEUED = Gauge("renkei_audit_read_records_queued", "Read audit records waiting to be appended.")
APPENDED = Counter("renkei_audit_read_records_appended_total", "Read audit records appended.")
FAILURES = Counter("renkei_audit_read_append_failures_total", "Failed background appends.")

#: appends ``records`` to the chain in ``session`` (``AuditTrail.append_records``)
AppendFn = Callable[[Session, list[dict[str, Any]]], object]
#: a write unit of work: ``session_factory(write=True)``
SessionFactory = Callable[..., AbstractContextManager[Session]]


_LIVE: weakref.WeakSet[ReadAuditWriter] = weakref.WeakSet()


@atexit.register
def _drain_all() -> None:
    for writer in list(_LIVE):
        writer.stop()


class ReadAuditWriter:
    """One per process and database; thread-safe; started on the first record."""

    def __init__(self, sessions: SessionFactory, append: AppendFn) -> None:
        self._sessions = sessions
        self._append = append
        self._cond = threading.Condition()
        self._queue: deque[dict[str, Any]] = deque()
        self._in_flight = 0
        #: records ever queued / ever appended: drain waits for the count at its call
        self._submitted = 0
        self._appended = 0
        self._failing: str | None = None
        self._stopping = False
        self._draining = 0
        self._thread: threading.Thread | None = None

    # -- request side ----------------------------------------------------------------------

    def submit(self, records: list[dict[str, Any]]) -> None:
        """Queue records for appending; raises AuditError while the log is not writable."""
        if not records:
            return
        with self._cond:
            if self._failing is not None:
                raise AuditError(f"the audit log cannot be written: {self._failing}")
            deadline = time.monotonic() + FULL_WAIT_S
            while len(self._queue) >= MAX_QUEUED:
                left = deadline - time.monotonic()
                if left <= 0 or self._failing is not None:
                    raise AuditError("the audit log is too far behind; nothing was served")
                self._cond.wait(left)
            idle = not self._queue
            self._queue.extend(records)
            self._submitted += len(records)
            QUEUED.set(len(self._queue))
            self._start()
            if idle or len(self._queue) >= BATCH:
                self._cond.notify_all()  # a lingering writer need not wake for each read

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call is appended (records queued
        meanwhile need not be); False on timeout or failure."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._draining += 1  # the writer stops lingering
            self._cond.notify_all()
            try:
                while self._appended < target:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._failing is not None or self._thread is None:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._draining -= 1

    def take(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """For a write about to append its own records: the reads queued before it, to be
        appended first, in the write's own transaction (so the chain keeps the order
        requests were served in without a wait for a separate append). The writer's batch
        in flight is waited for. Hand them back with :meth:`taken` once the write's
        transaction has ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight and self._failing is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            if self._failing is not None or self._in_flight:
                return []
            records = list(self._queue)
            self._queue.clear()
            QUEUED.set(0)
            return records

    def taken(self, records: list[dict[str, Any]], *, committed: bool) -> None:
        """The end of a write that took ``records``: appended, or back to the queue's
        front (rolled back) for the writer."""
        if not records:
            return
        with self._cond:
            if committed:
                self._appended += len(records)
                APPENDED.inc(len(records))
            else:
                self._queue.extendleft(reversed(records))
                QUEUED.set(len(self._queue))
                self._start()
            self._cond.notify_all()

    @property
    def failing(self) -> str | None:
        """Why the last append failed, while appends fail; None when healthy."""
        return self._failing

    def stop(self, timeout: float = 10.0) -> None:
        """Drain (a clean shutdown loses nothing), then end the thread."""
        self.drain(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            self._stopping = False
            if self._queue:
                log.error("audit: %d read records were not appended at shutdown", len(self._queue))

    # -- writer thread ---------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()
            _LIVE.add(self)

    def _take(self) -> list[dict[str, Any]] | None:
        with self._cond:
            while True:
                while not self._queue:
                    if self._stopping:
                        return None
                    if not self._cond.wait(IDLE_EXIT_S) and not self._queue:
                        self._thread = None  # idle: the next submit starts a new thread
                        return None
                deadline = time.monotonic() + LINGER_S
                while len(self._queue) < BATCH and not self._stopping and not self._draining:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._queue:  # (a write may have taken them meanwhile)
                    break
            n = min(BATCH, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            self._in_flight = n
            return batch

    def _run(self) -> None:
        pause = RETRY_S
        while (batch := self._take()) is not None:
            try:
                with self._sessions(write=True) as session:
                    self._append(session, batch)
            except Exception as exc:  # keep the records, refuse new reads, retry
                FAILURES.inc()
                log.exception("audit: appending %d read records failed; retrying", len(batch))
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                    self._in_flight = 0
                    self._failing = f"{type(exc).__name__}: {exc}"[:300]
                    self._cond.notify_all()
                    if self._stopping:
                        return
                    self._cond.wait(pause)
                pause = min(pause * 2, RETRY_MAX_S)
                continue
            pause = RETRY_S
            APPENDED.inc(len(batch))
            with self._cond:
                self._in_flight = 0
                self._appended += len(batch)
                self._failing = None
                QUEUED.set(len(self._queue))
                self._cond.notify_all()


__all__ = ["ReadAuditWriter"]
