"""Accounts: organisations and people as FHIR resources, sign-in, lockout, TOTP replay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from renkei.app import Services
from renkei.auth import events, service, totp
from renkei.auth.errors import AccountLocked, Conflict, InvalidRequest, NotFound, WeakPassword
from renkei.auth.events import AuthEvent
from renkei.clock import ManualClock
from tests import authkit


def _sign_in(services: Services, user: authkit.TestUser, password: str, code: str):
    assert services.auth is not None
    with services.db.session(write=True) as session:
        return service.sign_in(
            session, services.auth, login=user.login, password=password, code=code
        )


def _code(user: authkit.TestUser, clock: ManualClock) -> str:
    return totp.code_at(user.totp_secret, clock.now())


def test_create_organization_is_a_fhir_resource_with_kind(services: Services) -> None:
    assert services.auth is not None
    with services.db.session(write=True) as session:
        org_id = service.create_organization(
            session,
            services.auth,
            services.engine,
            name="あおば訪問看護ステーション",
            kind="nursing",
        )
        stored = services.engine.repository(session).read("Organization", org_id)
    assert stored.content is not None
    coding = stored.content["type"][0]["coding"][0]
    assert coding["system"] == service.KIND_SYSTEM
    assert coding["code"] == "nursing"
    assert stored.version_id == 1


def test_create_organization_refuses_unknown_kind(services: Services) -> None:
    assert services.auth is not None
    with pytest.raises(InvalidRequest, match="kind"), services.db.session(write=True) as session:
        service.create_organization(session, services.auth, services.engine, name="x", kind="spa")


def test_create_user_links_practitioner_role_at_org(services: Services) -> None:
    user = authkit.create_user(services, role="nurse")
    assert services.auth is not None
    with services.db.session() as session:
        row = service.get_user(session, user.id)
        repo = services.engine.repository(session)
        role = repo.read("PractitionerRole", row.practitioner_role_id).content
        practitioner = repo.read("Practitioner", row.practitioner_id).content
    assert role is not None and practitioner is not None
    assert role["organization"]["reference"] == f"Organization/{user.organization_id}"
    assert role["practitioner"]["reference"] == f"Practitioner/{row.practitioner_id}"
    codes = {(c["system"], c["code"]) for c in role["code"][0]["coding"]}
    assert (service.ROLE_SYSTEM, "nurse") in codes
    assert practitioner["name"][0]["family"] == "山田"
    # stored secrets are not in the clear
    assert row.password_hash.startswith("$argon2id$")
    assert user.totp_secret not in row.totp_secret
    assert row.totp_secret.startswith("v1.")


def test_create_user_refuses_weak_password(services: Services) -> None:
    with pytest.raises(WeakPassword):
        authkit.create_user(services, password="onlyletters")
    with pytest.raises(WeakPassword):
        authkit.create_user(services, password="12345678")
    with pytest.raises(WeakPassword):
        authkit.create_user(services, password="a1b2c3")


def test_create_user_refuses_taken_login_and_unknown_org(services: Services) -> None:
    user = authkit.create_user(services, login="yamada")
    with pytest.raises(Conflict):
        authkit.create_user(services, login="yamada", org_id=user.organization_id)
    with pytest.raises(NotFound):
        authkit.create_user(services, login="other", org_id="no-such-org")


def test_sign_in_with_password_and_totp(services: Services, clock: ManualClock) -> None:
    user = authkit.create_user(services)
    result = _sign_in(services, user, user.password, _code(user, clock))
    assert result.error is None
    assert result.user is not None and result.user.id == user.id


def test_sign_in_refuses_totp_replay_within_the_same_step(
    services: Services, clock: ManualClock
) -> None:
    user = authkit.create_user(services)
    code = _code(user, clock)
    assert _sign_in(services, user, user.password, code).error is None
    clock.advance(seconds=5)  # same 30-second step
    replay = _sign_in(services, user, user.password, code)
    assert replay.user is None
    assert replay.error is not None
    # the next step's code works
    clock.advance(seconds=30)
    assert _sign_in(services, user, user.password, _code(user, clock)).error is None


def test_sign_in_locks_after_n_failures(services: Services, clock: ManualClock) -> None:
    assert services.auth is not None
    threshold = services.auth.config.lockout_threshold
    user = authkit.create_user(services)
    for _ in range(threshold - 1):
        result = _sign_in(services, user, "wrong-pass-1", _code(user, clock))
        assert result.error is not None and not isinstance(result.error, AccountLocked)
    locked = _sign_in(services, user, "wrong-pass-1", _code(user, clock))
    assert isinstance(locked.error, AccountLocked)
    # the right password does not open a locked account
    clock.advance(seconds=30)
    still = _sign_in(services, user, user.password, _code(user, clock))
    assert isinstance(still.error, AccountLocked)
    # after the lock period it opens again
    clock.advance(timedelta(minutes=services.auth.config.lockout_minutes))
    assert _sign_in(services, user, user.password, _code(user, clock)).error is None


def test_sign_in_success_resets_the_failure_count(services: Services, clock: ManualClock) -> None:
    assert services.auth is not None
    user = authkit.create_user(services)
    for _ in range(services.auth.config.lockout_threshold - 1):
        _sign_in(services, user, "wrong-pass-1", _code(user, clock))
    assert _sign_in(services, user, user.password, _code(user, clock)).error is None
    clock.advance(seconds=30)
    result = _sign_in(services, user, "wrong-pass-1", _code(user, clock))
    assert not isinstance(result.error, AccountLocked)


def test_sign_in_unknown_login_says_nothing_specific(services: Services) -> None:
    assert services.auth is not None
    with services.db.session(write=True) as session:
        result = service.sign_in(
            session, services.auth, login="nobody", password="whatever-1", code="123456"
        )
    assert result.error is not None
    assert result.error.description == "wrong login, password or code"


def test_listeners_receive_auth_events(services: Services, clock: ManualClock) -> None:
    assert services.auth is not None
    seen: list[AuthEvent] = []
    services.auth.listeners.append(lambda _session, event: seen.append(event))
    user = authkit.create_user(services)
    _sign_in(services, user, "wrong-pass-1", _code(user, clock))
    actions = [e.action for e in seen]
    assert events.USER_CREATED in actions
    assert events.LOGIN_FAILED in actions
    failed = next(e for e in seen if e.action == events.LOGIN_FAILED)
    assert failed.subject == user.id and failed.outcome == "failure"
    assert user.password not in repr(seen)


def test_rotate_keys_rewraps_every_sealed_secret(services: Services, clock: ManualClock) -> None:
    assert services.auth is not None
    user = authkit.create_user(services)
    client_id, secret = authkit.register_client(services)
    old_kid = services.auth.keyring.active_kid
    with services.db.session(write=True) as session:
        rotation = service.rotate_keys(session, services.auth)
    assert rotation.data_kid != old_kid
    assert rotation.rewrapped == 2
    with services.db.session() as session:
        row = service.get_user(session, user.id)
        client = service.get_client(session, client_id)
        assert services.auth.keyring.kid_of(row.totp_secret) == rotation.data_kid
        assert service.totp_secret(session, services.auth, user.id) == user.totp_secret
        assert client is not None and secret is not None
        assert service.check_client_secret(services.auth, client, secret)
    with services.db.session(write=True) as session:
        assert service.rewrap_all(session, services.auth) == 0


def test_issue_operator_token_is_reported_to_the_audit_seam(services: Services) -> None:
    assert services.auth is not None
    seen: list[AuthEvent] = []
    services.auth.listeners.append(lambda _session, event: seen.append(event))
    user = authkit.create_user(services)
    with services.db.session(write=True) as session:
        issued = service.issue_operator_token(
            session, services.auth, user_id=user.id, scope="user/Patient.rs", minutes=15
        )
    event = next(e for e in seen if e.action == events.TOKEN_ISSUED_BY_OPERATOR)
    assert event.subject == user.id
    assert event.detail["jti"] == issued.jti
    assert event.detail["scope"] == "user/Patient.rs"
    assert issued.expires_in == 15 * 60
