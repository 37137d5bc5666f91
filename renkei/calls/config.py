"""Urgent-call settings from ``RENKEI_CALLS_*`` variables, checked once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from renkei.config import Secret, SettingsError


@dataclass(frozen=True)
class CallSettings:
    #: JSON roster for the static duty resolver (until renkei.roster is connected)
    roster_file: str | None = None
    #: acknowledgement timeout per step and chain repeats, for groups of renkei.roster
    ack_timeout: timedelta = timedelta(minutes=5)
    max_rounds: int = 2
    #: how often the worker looks for due steps (seconds)
    poll_seconds: float = 0.5
    #: run the worker loop in this process (API replicas may all run it: steps are locked)
    worker: bool = True
    #: a step this late is reported by the self-check
    overdue_grace: timedelta = timedelta(seconds=30)
    self_check_every: timedelta = timedelta(seconds=30)
    #: duty access (ended when the call ends) is capped at this; the next page renews it
    access_max: timedelta = timedelta(hours=24)
    #: outbound webhook for SMS/phone gateways (docs/urgent-calls.md); None: not sent
    webhook_url: str | None = None
    webhook_secret: Secret | None = None
    webhook_timeout: float = 5.0
    #: public base URL for links in notifications (patient summary); "" -> relative links
    base_url: str = ""

    def __post_init__(self) -> None:
        if self.poll_seconds <= 0:
            raise SettingsError("RENKEI_CALLS_POLL_SECONDS must be positive")
        if self.ack_timeout <= timedelta(0) or self.max_rounds < 1:
            raise SettingsError(
                "RENKEI_CALLS_ACK_TIMEOUT_SECONDS must be positive, RENKEI_CALLS_MAX_ROUNDS >= 1"
            )
        if self.roster_file and not Path(self.roster_file).is_file():
            raise SettingsError(f"RENKEI_CALLS_ROSTER_FILE {self.roster_file!r} does not exist")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise SettingsError("RENKEI_CALLS_WEBHOOK_URL must be an http(s) URL")
        if self.webhook_url and not self.webhook_secret:
            raise SettingsError("RENKEI_CALLS_WEBHOOK_SECRET is required with a webhook URL")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> CallSettings:
        env = dict(os.environ if env is None else env)
        try:
            poll = float(env.get("RENKEI_CALLS_POLL_SECONDS", "0.5"))
            grace = float(env.get("RENKEI_CALLS_OVERDUE_GRACE_SECONDS", "30"))
            every = float(env.get("RENKEI_CALLS_SELF_CHECK_SECONDS", "30"))
            ack = float(env.get("RENKEI_CALLS_ACK_TIMEOUT_SECONDS", "300"))
            rounds = int(env.get("RENKEI_CALLS_MAX_ROUNDS", "2"))
        except ValueError as exc:
            raise SettingsError("RENKEI_CALLS_* timings and counts are numbers") from exc
        secret = env.get("RENKEI_CALLS_WEBHOOK_SECRET")
        return cls(
            roster_file=env.get("RENKEI_CALLS_ROSTER_FILE") or None,
            ack_timeout=timedelta(seconds=ack),
            max_rounds=rounds,
            poll_seconds=poll,
            worker=env.get("RENKEI_CALLS_WORKER", "1") != "0",
            overdue_grace=timedelta(seconds=grace),
            self_check_every=timedelta(seconds=every),
            webhook_url=env.get("RENKEI_CALLS_WEBHOOK_URL") or None,
            webhook_secret=Secret(secret) if secret else None,
            base_url=(env.get("RENKEI_BASE_URL") or "").rstrip("/"),
        )


__all__ = ["CallSettings"]
