"""The sharing policy, as the auth package exposes it (the rules live in ``renkei.access``).

auth-identity's scope wrapper wraps :class:`SharingPolicy` (the inner AccessPolicy).
"""

from renkei.access import SharingPolicy, grant_duty_access, revoke_duty_access

__all__ = ["SharingPolicy", "grant_duty_access", "revoke_duty_access"]
