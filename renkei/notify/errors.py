"""The notify package's errors: one base, subclasses that carry what went wrong."""

from __future__ import annotations


class NotifyError(Exception):
    """Base of every error raised by ``renkei.notify``."""


class UnknownTopic(NotifyError):
    """A Subscription names a SubscriptionTopic this server does not offer."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"unknown SubscriptionTopic {topic!r}; see Subscription/$topic-list")
        self.topic = topic


class InvalidSubscription(NotifyError):
    """A Subscription cannot be honoured (bad filter, channel, endpoint, payload)."""

    def __init__(self, message: str, expression: str | None = None) -> None:
        super().__init__(message)
        self.expression = expression


class SubscriptionNotFound(NotifyError):
    """No Subscription with that id is registered with the notifier."""

    def __init__(self, sub_id: str) -> None:
        super().__init__(f"Subscription/{sub_id} is not known")
        self.sub_id = sub_id


class InvalidBindingToken(NotifyError):
    """A websocket ``bind-with-token`` token is unknown, expired or not the caller's."""


class ProtocolError(NotifyError):
    """A websocket client sent a message the protocol does not allow."""
