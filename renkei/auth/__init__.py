"""Identity, OAuth 2 / SMART, access policy, audit (MHLW safety guideline)."""

from renkei.auth.principal import Principal

__all__ = ["Principal"]
