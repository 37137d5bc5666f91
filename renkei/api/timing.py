"""Reading ``Server-Timing: app;dur=<ms>`` (set by ``api/middleware.py`` on every response).

Benchmarks use it to tell server time from network and client time
(https://www.w3.org/TR/server-timing/).
"""

from __future__ import annotations


def app_duration_ms(header: str | None) -> float | None:
    """The ``app`` duration from a Server-Timing header value.

    >>> app_duration_ms("db;dur=1.5, app;dur=2.250")
    2.25
    """
    for metric in (header or "").split(","):
        name, _, params = metric.strip().partition(";")
        if name.strip() != "app":
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    return float(value)
                except ValueError:
                    return None
    return None


__all__ = ["app_duration_ms"]
