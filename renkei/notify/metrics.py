"""Prometheus metrics of the notifier: lag, queue depths, failures (served at /metrics).

Defined once per process on the default registry, so several apps in one test process
share them instead of failing on duplicate registration.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERY_LAG = Histogram(
    "renkei_notify_delivery_lag_seconds",
    "Time from an event's commit to its delivery (websocket send or rest-hook 2xx).",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600, 86400),
)
DELIVERED = Counter("renkei_notify_delivered_total", "Events delivered, by channel.", ["channel"])
RESTHOOK_FAILURES = Counter(
    "renkei_notify_resthook_failures_total",
    "Failed rest-hook POSTs (network error or non-2xx answer).",
    ["reason"],
)
OUTBOX_PENDING = Gauge(
    "renkei_notify_outbox_pending", "Committed outbox rows still waiting for a stream position."
)
RESTHOOK_PENDING = Gauge(
    "renkei_notify_resthook_pending", "Rest-hook events matched but not yet delivered."
)
WS_CONNECTIONS = Gauge("renkei_notify_ws_connections", "Open websocket connections.")
WS_QUEUED = Gauge(
    "renkei_notify_ws_queued", "Messages waiting in websocket per-connection queues (sum)."
)
WS_SLOW_DISCONNECTS = Counter(
    "renkei_notify_ws_slow_disconnects_total",
    "Websocket clients disconnected because their queue was full (resumable).",
)
HEAD_POSITION = Gauge("renkei_notify_head_position", "Highest stream position seen here.")

__all__ = [
    "DELIVERED",
    "DELIVERY_LAG",
    "HEAD_POSITION",
    "OUTBOX_PENDING",
    "RESTHOOK_FAILURES",
    "RESTHOOK_PENDING",
    "WS_CONNECTIONS",
    "WS_QUEUED",
    "WS_SLOW_DISCONNECTS",
]
