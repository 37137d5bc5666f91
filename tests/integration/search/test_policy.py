"""The access policy in search: hidden resources are never returned, counted, included,
nor allowed to make another resource match (chains, _has, compartments)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from renkei.app import Services, build_services
from renkei.clock import ManualClock
from renkei.config import Settings
from renkei.fhir.context import RequestContext
from renkei.store.models import resource
from renkei.store.repository import StoredResource
from tests.integration.search.conftest import Fhir, observation, patient


class HideSecret:
    """Resources whose id starts with ``secret`` are invisible to everyone."""

    def authorize(self, ctx: RequestContext, interaction: str, res_type: str | None) -> None:
        return None

    def can_read(self, session: Session, ctx: RequestContext, stored: StoredResource) -> bool:
        return not stored.res_id.startswith("secret")

    def check_write(self, *args: Any) -> None:
        return None

    def search_filter(self, session: Session, ctx: RequestContext, res_type: str) -> Any:
        return resource.c.res_id.not_like("secret%")


@pytest.fixture
def services(settings: Settings, clock: ManualClock) -> Iterator[Services]:
    svc = build_services(settings, clock=clock, policy=HideSecret())
    yield svc
    svc.db.dispose()


def test_hidden_resources_are_not_returned_or_counted(fhir: Fhir) -> None:
    visible = fhir.create(patient(name=[{"family": "ヤマダ"}]))
    fhir.put(patient(id="secret-1", name=[{"family": "ヤマダ"}]))
    bundle = fhir.search("Patient?name=やまだ&_total=accurate&_count=1")
    assert [e["resource"]["id"] for e in bundle["entry"]] == [visible]
    assert bundle["total"] == 1
    assert not any(link["relation"] == "next" for link in bundle["link"])


def test_hidden_resources_are_not_included(fhir: Fhir) -> None:
    fhir.put(patient(id="secret-p"))
    pub = fhir.create(patient())
    fhir.create(observation("Patient/secret-p"))
    fhir.create(observation(f"Patient/{pub}"))
    fhir.put(observation(f"Patient/{pub}", id="secret-o"))
    inc = fhir.search("Observation?_include=Observation:subject")
    included = {e["resource"]["id"] for e in inc["entry"] if e["search"]["mode"] == "include"}
    assert included == {pub}
    rev = fhir.search(f"Patient?_id={pub}&_revinclude=Observation:subject")
    assert "secret-o" not in {e["resource"]["id"] for e in rev["entry"]}


def test_hidden_resources_do_not_make_chains_or_has_match(fhir: Fhir) -> None:
    fhir.put(patient(id="secret-p", name=[{"family": "ヒミツ"}]))
    fhir.create(observation("Patient/secret-p"))
    assert fhir.ids("Observation?subject.name=ひみつ") == set()
    pub = fhir.create(patient())
    fhir.put(
        observation(
            f"Patient/{pub}",
            id="secret-o",
            code={"coding": [{"system": "http://loinc.org", "code": "HIV-1"}]},
        )
    )
    assert fhir.ids("Patient?_has:Observation:patient:code=HIV-1") == set()


def test_hidden_resources_stay_out_of_compartments(fhir: Fhir) -> None:
    pub = fhir.create(patient())
    shown = fhir.create(observation(f"Patient/{pub}"))
    fhir.put(observation(f"Patient/{pub}", id="secret-o"))
    assert fhir.ids(f"Patient/{pub}/Observation") == {shown}
    everything = fhir.search(f"Patient/{pub}/$everything")
    assert "secret-o" not in {e["resource"]["id"] for e in everything["entry"]}


def test_conditional_match_ignores_hidden(fhir: Fhir) -> None:
    fhir.put(patient(id="secret-1", identifier=[{"system": "urn:x", "value": "1"}]))
    resp = fhir.client.post(
        "/fhir/Patient",
        json=patient(identifier=[{"system": "urn:x", "value": "1"}]),
        headers={"If-None-Exist": "identifier=urn:x|1"},
    )
    # the hidden match is not revealed: a new resource is created
    assert resp.status_code == 201
    assert resp.json()["id"] != "secret-1"
