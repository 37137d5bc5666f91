"""Fan-out between processes: "the stream now reaches position N".

Only positions travel on the bus; every process then reads the events themselves from the
outbox table, so a lost or coalesced message costs latency, never an event. Three
implementations share one small interface and are chosen in ``NotifyService``:

- :class:`InProcessBus`: SQLite (one process) and tests.
- :class:`PostgresBus`: ``LISTEN/NOTIFY`` on the application database (the default on PG).
- :class:`RedisBus`: Redis pub/sub when ``RENKEI_REDIS_URL`` is set.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

#: channel name on PostgreSQL and Redis
CHANNEL = "renkei_events"

#: called with the new head position, or None after a reconnect ("re-read the head")
Listener = Callable[[int | None], None]


class Bus(Protocol):
    def start(self, listener: Listener) -> None:
        """Begin calling ``listener`` for every announcement, from any process."""
        ...

    def announce(self, position: int) -> None:
        """Tell every process that positions up to ``position`` exist (this one may hear
        it too, or not: the sequencer hands its events to this process's hub directly)."""
        ...

    def stop(self) -> None: ...


class InProcessBus:
    """Announcements go straight to this process's listeners."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def start(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def announce(self, position: int) -> None:
        for listener in list(self._listeners):
            listener(position)

    def stop(self) -> None:
        self._listeners.clear()


def _libpq_url(url: str) -> str:
    """SQLAlchemy's ``postgresql+psycopg://`` URL as libpq wants it."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class PostgresBus:
    """``NOTIFY renkei_events, '<position>'``; one ``LISTEN`` connection per process."""

    def __init__(self, url: str, *, reconnect_seconds: float = 1.0) -> None:
        self._url = _libpq_url(url)
        self._reconnect = reconnect_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._send_conn: object | None = None
        #: the backend of our own sending connection: its NOTIFYs echo back to us
        self._send_pid: int | None = None
        self.listening = threading.Event()

    def start(self, listener: Listener) -> None:
        self._thread = threading.Thread(
            target=self._listen, args=(listener,), name="notify-pg-listen", daemon=True
        )
        self._thread.start()

    def _listen(self, listener: Listener) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    listener(None)  # anything announced while we were away is re-read
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            # this process's own announcement: its hub has the events
                            # already (NotifyService hands them over), so skip the echo
                            if note.pid != self._send_pid:
                                listener(_position(note.payload))
            except Exception as exc:
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.warning("notify: LISTEN connection lost (%s); reconnecting", exc)
                self._stop.wait(self._reconnect)

    def announce(self, position: int) -> None:
        import psycopg

        with self._send_lock:
            for attempt in (1, 2):
                try:
                    if self._send_conn is None or self._send_conn.closed:  # type: ignore[attr-defined]
                        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
                        self._send_pid = conn.info.backend_pid
                        self._send_conn = conn
                    self._send_conn.execute(  # type: ignore[attr-defined]
                        "SELECT pg_notify(%s, %s)", (CHANNEL, str(position))
                    )
                    return
                except psycopg.Error as exc:
                    self._send_conn = None
                    if attempt == 2:
                        # Not fatal: every process also polls the head position.
                        log.warning("notify: NOTIFY failed (%s); peers will poll", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        with self._send_lock:
            if self._send_conn is not None:
                with contextlib.suppress(Exception):  # closing a dead socket
                    self._send_conn.close()  # type: ignore[attr-defined]
                self._send_conn = None


class RedisBus:
    """Redis pub/sub on channel ``renkei_events`` (for many replicas or a shared Redis)."""

    def __init__(self, url: str, *, reconnect_seconds: float = 1.0) -> None:
        import redis

        self._client = redis.Redis.from_url(url)
        self._reconnect = reconnect_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self, listener: Listener) -> None:
        self._thread = threading.Thread(
            target=self._listen, args=(listener,), name="notify-redis-listen", daemon=True
        )
        self._thread.start()

    def _listen(self, listener: Listener) -> None:
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CHANNEL)
                self.listening.set()
                listener(None)
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg and msg.get("type") == "message":
                        raw = msg["data"]
                        listener(_position(raw.decode() if isinstance(raw, bytes) else raw))
            except Exception as exc:
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.warning("notify: Redis subscription lost (%s); reconnecting", exc)
                self._stop.wait(self._reconnect)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def announce(self, position: int) -> None:
        try:
            self._client.publish(CHANNEL, str(position))
        except Exception as exc:
            log.warning("notify: Redis publish failed (%s); peers will poll", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._client.close()


def _position(payload: str) -> int | None:
    """Parse an announcement; anything odd means "re-read the head".

    >>> _position("42"), _position("x")
    (42, None)
    """
    try:
        return int(payload)
    except (TypeError, ValueError):
        return None


__all__ = ["CHANNEL", "Bus", "InProcessBus", "Listener", "PostgresBus", "RedisBus"]
