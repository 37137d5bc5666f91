"""Notifications: outbox, event stream, websockets hub, FHIR Subscriptions (backport IG).

Other packages use :func:`publish` (inside their own transaction) to emit events, e.g. the
urgent-calls package for call transitions; everything else is wired by ``create_app``.
"""

from renkei.notify.errors import (
    InvalidBindingToken,
    InvalidSubscription,
    NotifyError,
    ProtocolError,
    SubscriptionNotFound,
    UnknownTopic,
)
from renkei.notify.outbox import Event, SequencedEvent, publish
from renkei.notify.resthook import SIGNATURE_HEADER, RestHookSettings, sign, verify
from renkei.notify.service import NotifyConfig, NotifyService
from renkei.notify.tokens import authenticate_token
from renkei.notify.topics import TOPICS

__all__ = [
    "SIGNATURE_HEADER",
    "TOPICS",
    "Event",
    "InvalidBindingToken",
    "InvalidSubscription",
    "NotifyConfig",
    "NotifyError",
    "NotifyService",
    "ProtocolError",
    "RestHookSettings",
    "SequencedEvent",
    "SubscriptionNotFound",
    "UnknownTopic",
    "authenticate_token",
    "publish",
    "sign",
    "verify",
]
