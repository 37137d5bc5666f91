"""The audit tests use the care network and test callers of the auth tests."""

from tests.integration.auth.conftest import net_client

__all__ = ["net_client"]
