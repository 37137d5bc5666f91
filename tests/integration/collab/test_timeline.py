"""Timeline (経過), read receipts (既読) and care-team onboarding through HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from renkei.app import Services
from renkei.clock import ManualClock
from tests import authkit


def _post(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(f"/fhir/{body['resourceType']}", json=body)
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


def _note(pid: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "payload": [{"contentString": text}],
    }


def test_timeline_newest_first_paged_with_read_marks(
    client: TestClient,
    services: Services,
    clock: ManualClock,
    auth_client: Callable[..., TestClient],
) -> None:
    nurse = authkit.create_user(services, role="nurse")
    pid = _post(client, {"resourceType": "Patient", "name": [{"family": "佐藤"}]})["id"]
    ids = []
    for i in range(5):
        clock.advance(minutes=10)
        ids.append(_post(client, _note(pid, f"訪問記録 {i}"))["id"])
    other = _post(client, {"resourceType": "Patient", "name": [{"family": "別人"}]})["id"]
    _post(client, _note(other, "別の患者"))
    as_nurse = auth_client("user/*.cruds", user=nurse)

    page = as_nurse.get(f"/patients/{pid}/timeline", params={"count": 3}).json()
    assert [i["id"] for i in page["items"]] == list(reversed(ids))[:3]
    assert all(i["kind"] == "note" and not i["seen"] for i in page["items"])
    rest = as_nurse.get(
        f"/patients/{pid}/timeline", params={"count": 3, "cursor": page["next_cursor"]}
    ).json()
    assert [i["id"] for i in rest["items"]] == list(reversed(ids))[3:]

    seen = as_nurse.post(f"/timeline/Communication/{ids[-1]}/seen")
    assert seen.status_code == 200, seen.text
    again = as_nurse.post(f"/timeline/Communication/{ids[-1]}/seen").json()
    assert again["seen_at"] == seen.json()["seen_at"]  # the first time is kept
    first = as_nurse.get(f"/patients/{pid}/timeline", params={"count": 1}).json()["items"][0]
    assert first["seen"] is True
    receipts = as_nurse.get(f"/timeline/Communication/{ids[-1]}/receipts").json()
    assert receipts["read"][0]["reader"] == f"PractitionerRole/{nurse.practitioner_role_id}"


def test_timeline_counts_nothing(client: TestClient, services: Services) -> None:
    """A page shows no total: the first page must not count the patient's whole history."""
    pid = _post(client, {"resourceType": "Patient", "name": [{"family": "佐藤"}]})["id"]
    for i in range(4):
        _post(client, _note(pid, f"訪問記録 {i}"))
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(services.db.engine, "before_cursor_execute", record)
    try:
        page = client.get(f"/patients/{pid}/timeline", params={"count": 2}).json()
    finally:
        sa.event.remove(services.db.engine, "before_cursor_execute", record)
    assert len(page["items"]) == 2 and page["next_cursor"]
    counts = [s for s in statements if "count(*)" in s.lower() and "fhir_resource" in s]
    assert not counts


def test_timeline_errors(client: TestClient, services: Services) -> None:
    assert client.get("/patients/nobody/timeline").status_code == 404
    # a back-end client is not a person: it cannot mark anything as read
    pid = _post(client, {"resourceType": "Patient"})["id"]
    note = _post(client, _note(pid, "x"))["id"]
    assert client.post(f"/timeline/Communication/{note}/seen").status_code == 403


def test_invite_and_consent(client: TestClient) -> None:
    org = _post(client, {"resourceType": "Organization", "name": "あおば訪問看護ステーション"})
    pid = _post(client, {"resourceType": "Patient"})["id"]
    team = client.post(f"/patients/{pid}/care-team/invite", json={"organization": org["id"]})
    assert team.status_code == 200, team.text
    assert team.json()["participant"][0]["member"]["reference"] == f"Organization/{org['id']}"
    consent = client.post(
        f"/patients/{pid}/consent",
        json={"actors": [f"CareTeam/{team.json()['id']}"], "start": "2026-04-01"},
    )
    assert consent.status_code == 200, consent.text
    assert consent.json()["provision"]["type"] == "permit"
    bad = client.post(
        f"/patients/{pid}/consent", json={"actors": ["Patient/x"], "start": "2026-04-01"}
    )
    assert bad.status_code == 400
    revoked = client.post(f"/consents/{consent.json()['id']}/revoke")
    assert revoked.json()["status"] == "inactive"
