"""/oncall over HTTP through the ASGI app, on SQLite and PostgreSQL.

Authentication here is TEST-ONLY: ``_install_test_auth`` puts a tiny authenticator on
``services.authenticate`` that maps a fixed bearer token to a Principal. Real tokens come
from the auth package; when it lands, these fixtures switch to tokens it issues.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml
from fastapi import Request
from fastapi.testclient import TestClient
from icalendar import Calendar

from renkei.app import Services
from renkei.auth.principal import Principal
from renkei.clock import ManualClock
from tests.rosterdata import CLINICS, COORDINATOR, DOCTORS, group_dict, seed_fhir

TOKYO = ZoneInfo("Asia/Tokyo")
PRINCIPALS = {
    "op": Principal(subject="op", kind="operator"),
    "coord": Principal(subject="u-coord", kind="user", role="doctor",
                       practitioner_role_id=COORDINATOR, organization_id=CLINICS[0]),
    "dr-a": Principal(subject="u-a", kind="user", role="doctor",
                      practitioner_role_id=DOCTORS[0], organization_id=CLINICS[0]),
    "stranger": Principal(subject="u-x", kind="user", role="admin",
                          organization_id="Organization/elsewhere"),
}  # fmt: skip


def _install_test_auth(services: Services) -> None:
    async def authenticate(request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        return PRINCIPALS.get(header.removeprefix("Bearer ").strip())

    services.authenticate = authenticate


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


@pytest.fixture
def api(client: TestClient, services: Services, clock: ManualClock) -> Iterator[TestClient]:
    _install_test_auth(services)
    seed_fhir(services)
    clock.set(datetime(2026, 4, 1, 9, tzinfo=TOKYO))
    yield client


def _create(api: TestClient) -> str:
    resp = api.post("/oncall/groups", json=group_dict(), headers=auth("op"))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_create_group_from_yaml_and_read_it(api: TestClient) -> None:
    body = yaml.safe_dump(group_dict(), allow_unicode=True)
    resp = api.post(
        "/oncall/groups", content=body.encode(),
        headers={**auth("coord"), "Content-Type": "application/yaml"},
    )  # fmt: skip
    assert resp.status_code == 403  # coordinator PractitionerRole of a group not yet made
    resp = api.post(
        "/oncall/groups", content=body.encode(),
        headers={**auth("op"), "Content-Type": "application/yaml"},
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    gid = resp.json()["id"]
    got = api.get(f"/oncall/groups/{gid}", headers=auth("dr-a")).json()
    assert got["access"] == "member"
    assert got["config"]["name"] == "城南在宅輪番グループ"
    assert len(got["config"]["doctors"]) == 6


def test_unauthenticated_is_401_and_strangers_get_404(api: TestClient) -> None:
    gid = _create(api)
    assert api.get(f"/oncall/groups/{gid}/duty").status_code == 401
    hidden = api.get(f"/oncall/groups/{gid}/duty", headers=auth("stranger"))
    missing = api.get("/oncall/groups/nope/duty", headers=auth("stranger"))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"] == "not-found"
    assert api.get("/oncall/groups", headers=auth("stranger")).json() == {"groups": []}


def test_bad_group_definition_is_422_with_path(api: TestClient) -> None:
    raw = group_dict()
    raw["doctors"].append({"id": "PractitionerRole/ghost", "name": "未登録"})
    resp = api.post("/oncall/groups", json=raw, headers=auth("op"))
    assert resp.status_code == 422
    assert resp.json()["issue"][0]["expression"] == ["doctors[6].id"]
    assert "does not exist" in resp.json()["issue"][0]["diagnostics"]
    resp = api.post(
        "/oncall/groups",
        content=b"{not json",
        headers={**auth("op"), "Content-Type": "application/json"},
    )
    assert resp.status_code == 422


def test_duty_now_and_at_a_time(api: TestClient, clock: ManualClock) -> None:
    gid = _create(api)
    office = api.get(f"/oncall/groups/{gid}/duty", headers=auth("dr-a")).json()
    assert office["on_duty"] is False and office["primary"] is None
    night = api.get(
        f"/oncall/groups/{gid}/duty", params={"at": "2026-04-01T20:00"}, headers=auth("dr-a")
    ).json()
    assert night["primary"] == {"id": DOCTORS[0], "name": "医師A"}
    assert night["backup"]["id"] == DOCTORS[3]
    assert night["window"]["labels"] == ["平日夜間"]
    assert night["until"] == "2026-04-02T09:00:00+09:00"
    raw_plus = api.get(
        f"/oncall/groups/{gid}/duty?at=2026-04-01T20:00:00+09:00", headers=auth("dr-a")
    )
    assert raw_plus.json()["primary"]["id"] == DOCTORS[0]  # "+" decoded as a space, still read
    utc = api.get(
        f"/oncall/groups/{gid}/duty", params={"at": "2026-04-01T11:00:00Z"}, headers=auth("dr-a")
    )
    assert utc.json()["at"] == "2026-04-01T20:00:00+09:00"
    bad = api.get(f"/oncall/groups/{gid}/duty", params={"at": "tomorrow"}, headers=auth("dr-a"))
    assert bad.status_code == 422


def test_override_by_coordinator_shows_in_duty_and_log(api: TestClient) -> None:
    gid = _create(api)
    body = {"layer": "primary", "assignee": DOCTORS[5], "start": "2026-04-02T18:00:00+09:00",
            "end": "2026-04-03T09:00:00+09:00", "reason": "学会"}  # fmt: skip
    assert (
        api.post(f"/oncall/groups/{gid}/overrides", json=body, headers=auth("dr-a")).status_code
        == 403
    )
    resp = api.post(f"/oncall/groups/{gid}/overrides", json=body, headers=auth("coord"))
    assert resp.status_code == 201, resp.text
    duty = api.get(
        f"/oncall/groups/{gid}/duty", params={"at": "2026-04-02T23:00"}, headers=auth("dr-a")
    ).json()
    assert duty["primary"]["id"] == DOCTORS[5]
    assert duty["primary_override"] == resp.json()["id"]
    log = api.get(f"/oncall/groups/{gid}/changes", headers=auth("dr-a")).json()["changes"]
    assert [c["kind"] for c in log] == ["group.create", "override.add"]
    past = {**body, "start": "2026-03-01T18:00:00+09:00", "end": "2026-03-02T09:00:00+09:00"}
    assert (
        api.post(f"/oncall/groups/{gid}/overrides", json=past, headers=auth("coord")).status_code
        == 409
    )


def test_swap_and_revoke_over_http(api: TestClient) -> None:
    gid = _create(api)
    body = {
        "layer": "primary",
        "first": {"start": "2026-04-06T18:00:00+09:00", "end": "2026-04-07T09:00:00+09:00"},
        "second": {"start": "2026-04-08T18:00:00+09:00", "end": "2026-04-09T09:00:00+09:00"},
    }
    resp = api.post(f"/oncall/groups/{gid}/swaps", json=body, headers=auth("coord"))
    assert resp.status_code == 201, resp.text
    a, b = resp.json()["between"]

    def at(when: str) -> dict:
        return api.get(
            f"/oncall/groups/{gid}/duty", params={"at": when}, headers=auth("coord")
        ).json()

    assert at("2026-04-06T20:00")["primary"]["id"] == b
    oid = resp.json()["overrides"][1]["id"]
    assert (
        api.delete(f"/oncall/groups/{gid}/overrides/{oid}", headers=auth("coord")).status_code
        == 200
    )
    assert at("2026-04-06T20:00")["primary"]["id"] == a
    assert at("2026-04-08T20:00")["primary"]["id"] == b
    overrides = api.get(f"/oncall/groups/{gid}/overrides", headers=auth("dr-a")).json()["overrides"]
    assert all(o["revoked_at"] for o in overrides) and len(overrides) == 2


def test_schedule_gaps_and_fairness(api: TestClient) -> None:
    gid = _create(api)
    listing = api.get(
        f"/oncall/groups/{gid}/schedule",
        params={"start": "2026-04-01T00:00", "end": "2026-04-08T00:00"},
        headers=auth("dr-a"),
    ).json()
    assert listing["segments"][0]["start"] == "2026-04-01T18:00:00+09:00"
    mine = api.get(
        f"/oncall/groups/{gid}/schedule",
        params={"start": "2026-04-01T00:00", "end": "2026-04-08T00:00", "doctor": DOCTORS[0]},
        headers=auth("dr-a"),
    ).json()
    assert mine["shifts"][0] == {
        "start": "2026-04-01T18:00:00+09:00", "end": "2026-04-02T09:00:00+09:00",
        "role": "primary", "doctor": {"id": DOCTORS[0], "name": "医師A"}, "labels": ["平日夜間"],
    }  # fmt: skip
    hole = {"layer": "backup", "assignee": None, "start": "2026-04-03T18:00:00+09:00",
            "end": "2026-04-03T20:00:00+09:00"}  # fmt: skip
    api.post(f"/oncall/groups/{gid}/overrides", json=hole, headers=auth("coord"))
    gaps = api.get(f"/oncall/groups/{gid}/gaps", params={"days": 7}, headers=auth("dr-a")).json()
    assert gaps["gaps"] == [
        {"start": "2026-04-03T18:00:00+09:00", "end": "2026-04-03T20:00:00+09:00",
         "missing": "backup", "labels": ["平日夜間"]}
    ]  # fmt: skip
    fair = api.get(
        f"/oncall/groups/{gid}/fairness", params={"start": "2026-04-01", "end": "2026-05-01"},
        headers=auth("dr-a"),
    ).json()  # fmt: skip
    assert fair["months"] == ["2026-04"]
    assert sum(d["total"]["nights"] for d in fair["doctors"]) == 30


def test_ical_feed_with_token_and_revocation(api: TestClient) -> None:
    gid = _create(api)
    resp = api.post(
        f"/oncall/groups/{gid}/ical-tokens", json={"doctor": DOCTORS[0]}, headers=auth("dr-a")
    )
    assert resp.status_code == 201, resp.text
    token, url = resp.json()["token"], resp.json()["url"]
    assert url.endswith(f"/oncall/ical/{token}.ics")
    feed = api.get(f"/oncall/ical/{token}.ics")
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    events = list(Calendar.from_ical(feed.content).walk("VEVENT"))
    assert events and all("当番" in str(ev["summary"]) for ev in events)
    listed = api.get(f"/oncall/groups/{gid}/ical-tokens", headers=auth("dr-a")).json()["tokens"]
    assert "token" not in listed[0]
    tid = resp.json()["id"]
    assert (
        api.delete(f"/oncall/groups/{gid}/ical-tokens/{tid}", headers=auth("dr-a")).status_code
        == 200
    )
    assert api.get(f"/oncall/ical/{token}.ics").status_code == 404
    assert api.get("/oncall/ical/guess.ics").status_code == 404


def test_plan_change_over_http(api: TestClient, clock: ManualClock) -> None:
    gid = _create(api)
    raw = group_dict(closures=[])
    resp = api.put(f"/oncall/groups/{gid}/plan", json={"config": raw}, headers=auth("coord"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == 2
    past = api.put(
        f"/oncall/groups/{gid}/plan",
        json={"config": raw, "effective_from": "2026-01-01T00:00:00+09:00"},
        headers=auth("coord"),
    )
    assert past.status_code == 409


def test_openapi_describes_oncall_with_examples(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]
    assert "/oncall/groups/{group_id}/duty" in paths
    assert "/oncall/ical/{token}.ics" in paths
    create = paths["/oncall/groups"]["post"]["requestBody"]["content"]
    assert "application/yaml" in create
    assert create["application/json"]["examples"]["group"]["value"]["rotation"]
    for path in ("duty", "schedule", "gaps", "fairness"):
        ok = paths[f"/oncall/groups/{{group_id}}/{path}"]["get"]["responses"]["200"]
        assert ok["content"]["application/json"]["example"], path
