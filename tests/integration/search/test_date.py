"""Date parameters and prefixes (https://hl7.org/fhir/R4/search.html#date, #prefix).

Dates without an offset are Japan Standard Time (+09:00) on both sides: in the index and
in the query.
"""

from __future__ import annotations

import pytest

from renkei.clock import ManualClock
from tests.integration.search.conftest import Fhir, observation, patient


def obs_at(fhir: Fhir, when: str) -> str:
    return fhir.create(observation(effectiveDateTime=when))


def obs_period(fhir: Fhir, start: str | None, end: str | None) -> str:
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    return fhir.create(observation(effectivePeriod=period))


def test_date_birthdate_year_in_tokyo(fhir: Fhir) -> None:
    # 1940-01-01 in Tokyo is 1939-12-31T15:00Z: still "1940" for a Japanese server
    new_year = fhir.create(patient(birthDate="1940-01-01"))
    fhir.create(patient(birthDate="1939-12-31"))
    fhir.create(patient(birthDate="1941-01-01"))
    assert fhir.ids("Patient?birthdate=1940") == {new_year}
    assert fhir.ids("Patient?birthdate=1940-01") == {new_year}
    assert fhir.ids("Patient?birthdate=1940-01-01") == {new_year}


def test_date_query_with_explicit_offset(fhir: Fhir) -> None:
    # 2013-01-14T23:30+09:00 is 14:30Z
    late = obs_at(fhir, "2013-01-14T23:30:00+09:00")
    assert fhir.ids("Observation?date=2013-01-14") == {late}
    assert fhir.ids("Observation?date=2013-01-14T14:30:00Z") == {late}
    assert fhir.ids("Observation?date=2013-01-15T00:00:00Z") == set()


def test_date_eq_spec_examples(fhir: Fhir) -> None:
    # eq2013-01-14 matches 2013-01-14T00:00 and T10:00, not 2013-01-15T00:00
    midnight = obs_at(fhir, "2013-01-14T00:00:00+09:00")
    ten = obs_at(fhir, "2013-01-14T10:00:00+09:00")
    obs_at(fhir, "2013-01-15T00:00:00+09:00")
    assert fhir.ids("Observation?date=eq2013-01-14") == {midnight, ten}


def test_date_ne(fhir: Fhir) -> None:
    obs_at(fhir, "2013-01-14T00:00:00+09:00")
    obs_at(fhir, "2013-01-14T10:00:00+09:00")
    next_day = obs_at(fhir, "2013-01-15T00:00:00+09:00")
    assert fhir.ids("Observation?date=ne2013-01-14") == {next_day}


def test_date_lt_and_gt_against_a_whole_day(fhir: Fhir) -> None:
    # spec: lt2013-01-14T10:00 and gt2013-01-14T10:00 both match the day 2013-01-14
    day = fhir.create(patient(birthDate="2013-01-14"))
    assert fhir.ids("Patient?birthdate=lt2013-01-14T10:00:00%2B09:00") == {day}
    assert fhir.ids("Patient?birthdate=gt2013-01-14T10:00:00%2B09:00") == {day}
    assert fhir.ids("Patient?birthdate=gt2013-01-14") == set()
    assert fhir.ids("Patient?birthdate=lt2013-01-14") == set()


def test_date_ge_and_le(fhir: Fhir) -> None:
    before = fhir.create(patient(birthDate="1939-06-01"))
    on = fhir.create(patient(birthDate="1940-03-01"))
    after = fhir.create(patient(birthDate="1941-01-01"))
    assert fhir.ids("Patient?birthdate=ge1940") == {on, after}
    assert fhir.ids("Patient?birthdate=le1940") == {before, on}
    assert fhir.ids("Patient?birthdate=gt1940") == {after}
    assert fhir.ids("Patient?birthdate=lt1940") == {before}
    assert fhir.ids("Patient?birthdate=ge1940&birthdate=le1940-12-31") == {on}


def test_date_periods_sa_and_eb(fhir: Fhir) -> None:
    early = obs_period(fhir, "2013-01-01", "2013-01-10")
    overlapping = obs_period(fhir, "2013-01-10", "2013-01-20")
    late = obs_period(fhir, "2013-01-16", "2013-01-20")
    assert fhir.ids("Observation?date=sa2013-01-15") == {late}
    assert fhir.ids("Observation?date=eb2013-01-15") == {early}
    assert fhir.ids("Observation?date=gt2013-01-15") == {overlapping, late}
    assert fhir.ids("Observation?date=lt2013-01-15") == {early, overlapping}


def test_date_open_period(fhir: Fhir) -> None:
    ongoing = obs_period(fhir, "2020-04-01", None)
    assert fhir.ids("Observation?date=gt2030") == {ongoing}
    assert fhir.ids("Observation?date=lt2020") == set()
    assert fhir.ids("Observation?date=sa2019") == {ongoing}
    assert fhir.ids("Observation?date=eq2020") == set()


def test_date_ap(fhir: Fhir, clock: ManualClock) -> None:
    # clock: 2026-04-01; ap2026-03-01 spans 10% of a month plus at least a day each side
    near = obs_at(fhir, "2026-03-02T12:00:00+09:00")
    obs_at(fhir, "2025-01-01T00:00:00+09:00")
    assert fhir.ids("Observation?date=ap2026-03-01") == {near}


def test_date_missing(fhir: Fhir) -> None:
    dated = fhir.create(patient(birthDate="1950-05-05"))
    undated = fhir.create(patient())
    assert fhir.ids("Patient?birthdate:missing=true") == {undated}
    assert fhir.ids("Patient?birthdate:missing=false") == {dated}


def test_last_updated(fhir: Fhir, clock: ManualClock) -> None:
    old = fhir.create(patient())
    clock.advance(days=2)
    new = fhir.create(patient())
    # clock starts at 2026-04-01T00:00Z = 09:00 JST
    assert fhir.ids("Patient?_lastUpdated=gt2026-04-02") == {new}
    assert fhir.ids("Patient?_lastUpdated=2026-04-01") == {old}
    assert fhir.ids("Patient?_lastUpdated=le2026-04-01T09:00:00%2B09:00") == {old}


@pytest.mark.parametrize("value", ["xx2013", "2013-1-1", "2013-02-30", "ge", "20130101"])
def test_date_malformed_is_400(fhir: Fhir, value: str) -> None:
    assert fhir.error(f"Patient?birthdate={value}")


def test_date_lenient_handling_ignores_and_reports(fhir: Fhir) -> None:
    pid = fhir.create(patient(birthDate="1940-01-01"))
    bundle = fhir.search("Patient?birthdate=xx1940&nosuch=1", prefer="handling=lenient")
    assert [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"] == [pid]
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "birthdate" not in self_link and "nosuch" not in self_link
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert "nosuch" in str(outcome[0]["resource"])
