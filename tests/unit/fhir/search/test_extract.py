"""Index rows per parameter type, from the R4 spec's examples and JP Core's."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renkei.fhir.search.extract import extract_rows, plan_for

EXAMPLES = Path(__file__).resolve().parents[3] / "data" / "jpcore"
JST = ZoneInfo("Asia/Tokyo")


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def rows(content: dict[str, Any], kind: str, param: str, **kw: Any) -> list[tuple[Any, ...]]:
    found = extract_rows(content["resourceType"], content, **kw)[kind]
    cols = {
        "string": ("value_exact", "value_norm"),
        "token": ("system", "code", "text"),
        "reference": ("target_type", "target_id", "url"),
        "date": ("low", "high"),
        "number": ("value", "low", "high"),
        "quantity": ("value", "low", "high", "system", "code", "unit"),
        "uri": ("value",),
    }[kind]
    return [tuple(r[c] for c in cols) for r in found if r["param"] == param]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- string -----------------------------------------------------------------------------


def test_extract_rows_patient_name_parts_kanji_and_kana() -> None:
    patient = example("Patient-jp-patient-example-1")
    names = rows(patient, "string", "name")
    assert ("山田", "山田") in names
    assert ("太郎", "太郎") in names
    assert ("山田 太郎", "山田 太郎") in names
    # kana parts are folded to hiragana in value_norm, kept as written in value_exact
    assert ("ヤマダ", "やまだ") in names
    assert ("タロウ", "たろう") in names
    assert ("ヤマダ タロウ", "やまだ たろう") in names
    assert rows(patient, "string", "family") == [("山田", "山田"), ("ヤマダ", "やまだ")]
    assert rows(patient, "string", "given") == [("太郎", "太郎"), ("タロウ", "たろう")]


def test_extract_rows_jp_kana_sort_takes_the_syl_usual_name() -> None:
    patient = example("Patient-jp-patient-example-1")
    assert rows(patient, "string", "jp-kana-sort") == [("ヤマダ タロウ", "やまだ たろう")]


def test_extract_rows_address_parts() -> None:
    patient = {
        "resourceType": "Patient",
        "address": [
            {
                "line": ["西新宿2-8-1", "都庁第一本庁舎"],
                "city": "新宿区",
                "district": "ｼﾝｼﾞｭｸ",
                "state": "東京都",
                "postalCode": "163-8001",
                "country": "JP",
                "text": "東京都新宿区西新宿2-8-1",
            }
        ],
    }
    parts = [exact for exact, _norm in rows(patient, "string", "address")]
    assert parts == [
        "西新宿2-8-1",
        "都庁第一本庁舎",
        "新宿区",
        "ｼﾝｼﾞｭｸ",
        "東京都",
        "163-8001",
        "JP",
        "東京都新宿区西新宿2-8-1",
    ]
    assert ("ｼﾝｼﾞｭｸ", "しんじゅく") in rows(patient, "string", "address")
    assert rows(patient, "string", "address-city") == [("新宿区", "新宿区")]
    assert rows(patient, "string", "address-postalcode") == [("163-8001", "163-8001")]


def test_extract_rows_truncates_long_strings() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "x" * 1000, "text": "あ" * 1000}]}
    found = rows(patient, "string", "family")
    assert found == [("x" * 400, "x" * 400)]
    long_text = rows(patient, "string", "name")[1][0]
    assert len(long_text.encode()) <= 1000


# --- token ------------------------------------------------------------------------------


def test_extract_rows_observation_code_tokens() -> None:
    obs = example("Observation-jp-observation-vitalsigns-example-1")
    assert rows(obs, "token", "code") == [
        ("http://abc-hospital.local/fhir/Observation/localcode", "abc-local-456", "呼吸数"),
        ("http://medis.or.jp/CodeSystem/master-nursingObservationKeyCode", "31001369", "呼吸数"),
    ]
    assert rows(obs, "token", "status") == [(None, "final", None)]
    categories = rows(obs, "token", "category")
    assert (
        "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS",
        "vital-signs",
        "vital signs",
    ) in categories


def test_extract_rows_codeable_concept_text_wins_and_text_only() -> None:
    cond = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "code": {
            "text": "ｺｳｹﾂｱﾂ",
            "coding": [{"system": "http://example.org/icd10", "code": "I10", "display": "HT"}],
        },
        "bodySite": [{"text": "左腕"}],
    }
    assert rows(cond, "token", "code") == [("http://example.org/icd10", "I10", "こうけつあつ")]
    assert rows(cond, "token", "body-site") == [(None, None, "左腕")]


def test_extract_rows_identifier_and_of_type() -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ],
                    "text": "カルテ番号",
                },
                "system": "urn:oid:1.2.392.100495.20.3.51.11311234567",
                "value": "00000010",
            }
        ],
    }
    assert rows(patient, "token", "identifier") == [
        ("urn:oid:1.2.392.100495.20.3.51.11311234567", "00000010", "かるて番号")
    ]
    assert rows(patient, "token", "identifier:of-type") == [
        ("http://terminology.hl7.org/CodeSystem/v2-0203", "MR|00000010", "かるて番号")
    ]


def test_extract_rows_contact_points_and_booleans() -> None:
    patient = {
        "resourceType": "Patient",
        "active": True,
        "telecom": [
            {"system": "phone", "value": "03-1234-5678", "use": "home"},
            {"system": "email", "value": "hanako@example.jp"},
        ],
    }
    assert rows(patient, "token", "telecom") == [
        (None, "03-1234-5678", None),
        (None, "hanako@example.jp", None),
    ]
    assert rows(patient, "token", "phone") == [(None, "03-1234-5678", None)]
    assert rows(patient, "token", "email") == [(None, "hanako@example.jp", None)]
    assert rows(patient, "token", "active") == [(None, "true", None)]
    assert rows(patient, "token", "deceased") == [(None, "false", None)]
    dead = {"resourceType": "Patient", "deceasedDateTime": "2020-02-01"}
    assert rows(dead, "token", "deceased") == [(None, "true", None)]


def test_extract_rows_meta_tag_security_profile_source() -> None:
    patient = {
        "resourceType": "Patient",
        "meta": {
            "tag": [{"system": "http://example.org/tags", "code": "vip", "display": "VIP"}],
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
            ],
            "profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"],
            "source": "urn:ehr:clinic-a",
            "lastUpdated": "2026-04-01T00:00:00Z",
        },
        "id": "p1",
    }
    assert rows(patient, "token", "_tag") == [("http://example.org/tags", "vip", "vip")]
    assert rows(patient, "token", "_security") == [
        ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R", None)
    ]
    assert rows(patient, "uri", "_profile") == [
        ("http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient",)
    ]
    assert rows(patient, "uri", "_source") == [("urn:ehr:clinic-a",)]
    # answered from fhir_resource's own columns
    assert rows(patient, "token", "_id") == []
    assert rows(patient, "date", "_lastUpdated") == []


# --- reference --------------------------------------------------------------------------


def test_extract_rows_subject_reference() -> None:
    obs = example("Observation-jp-observation-vitalsigns-example-1")
    assert rows(obs, "reference", "subject") == [("Patient", "jp-patient-example-1", None)]
    assert rows(obs, "reference", "patient") == [("Patient", "jp-patient-example-1", None)]
    assert rows(obs, "reference", "performer") == [
        ("Practitioner", "jp-practitioner-example-male-2", None)
    ]


def test_extract_rows_reference_shapes() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "https://other.example.jp/fhir/Patient/123/_history/2"},
        "performer": [
            {"reference": "Practitioner/abc/_history/3"},
            {"reference": "urn:uuid:0b8f2fd8-6c8e-4a8c-9b44-8e0f0a7c3f11"},
            {"reference": "#contained-1"},
            {"identifier": {"system": "urn:oid:1.2.392.100495.20.3.41", "value": "1234567"}},
        ],
        "hasMember": [{"reference": "Observation/o1"}],
    }
    assert rows(obs, "reference", "subject") == [
        ("Patient", "123", "https://other.example.jp/fhir/Patient/123/_history/2")
    ]
    # a Patient target also satisfies `patient` (subject.where(resolve() is Patient))
    assert rows(obs, "reference", "patient") == [
        ("Patient", "123", "https://other.example.jp/fhir/Patient/123/_history/2")
    ]
    assert rows(obs, "reference", "performer") == [
        ("Practitioner", "abc", None),
        (None, None, "urn:uuid:0b8f2fd8-6c8e-4a8c-9b44-8e0f0a7c3f11"),
    ]
    assert rows(obs, "token", "performer:identifier") == [
        ("urn:oid:1.2.392.100495.20.3.41", "1234567", None)
    ]
    assert rows(obs, "reference", "has-member") == [("Observation", "o1", None)]


def test_extract_rows_group_subject_is_not_patient() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Group/g1"},
    }
    assert rows(obs, "reference", "subject") == [("Group", "g1", None)]
    assert rows(obs, "reference", "patient") == []


def test_extract_rows_canonical_reference_is_a_url() -> None:
    qr = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": "http://example.org/Questionnaire/adl|1.0",
    }
    assert rows(qr, "reference", "questionnaire") == [
        (None, None, "http://example.org/Questionnaire/adl|1.0")
    ]


# --- date -------------------------------------------------------------------------------


def test_extract_rows_birthdate_range_in_jst() -> None:
    patient = {"resourceType": "Patient", "birthDate": "1940"}
    assert rows(patient, "date", "birthdate") == [
        (utc(1939, 12, 31, 15), utc(1940, 12, 31, 14, 59, 59, 999999))
    ]
    patient = example("Patient-jp-patient-example-1")  # 1970-01-01
    assert rows(patient, "date", "birthdate") == [
        (utc(1969, 12, 31, 15), utc(1970, 1, 1, 14, 59, 59, 999999))
    ]


def test_extract_rows_date_zone_is_configurable() -> None:
    patient = {"resourceType": "Patient", "birthDate": "1940-05-03"}
    assert rows(patient, "date", "birthdate", zone=UTC) == [
        (utc(1940, 5, 3), utc(1940, 5, 3, 23, 59, 59, 999999))
    ]


def test_extract_rows_datetime_with_offset_and_instant() -> None:
    obs = example("Observation-jp-observation-vitalsigns-example-1")
    assert rows(obs, "date", "date") == [(utc(2021, 10, 19, 1), utc(2021, 10, 19, 1, 0, 0, 999999))]


def test_extract_rows_periods_open_ends_and_timing() -> None:
    enc = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"code": "HH"},
        "period": {"start": "2026-04-01T09:00:00+09:00"},
    }
    assert rows(enc, "date", "date") == [(utc(2026, 4, 1, 0), None)]
    enc["period"] = {"end": "2026-04-02"}
    assert rows(enc, "date", "date") == [(None, utc(2026, 4, 2, 14, 59, 59, 999999))]
    enc["period"] = {"start": "2026-04-01", "end": "2026-04-02"}
    assert rows(enc, "date", "date") == [
        (utc(2026, 3, 31, 15), utc(2026, 4, 2, 14, 59, 59, 999999))
    ]
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "occurrenceTiming": {
            "event": ["2026-04-03", "2026-04-01"],
            "repeat": {"boundsPeriod": {"start": "2026-03-30", "end": "2026-04-10"}},
        },
    }
    assert rows(sr, "date", "occurrence") == [
        (utc(2026, 3, 29, 15), utc(2026, 4, 10, 14, 59, 59, 999999))
    ]


def test_extract_rows_medication_request_jp_start_extension() -> None:
    mr = example("MedicationRequest-jp-medicationrequest-example-1")
    found = rows(mr, "date", "jp-medication-start")
    assert found, "JP_MedicationDosage_PeriodOfUse start is indexed"
    assert all(low is not None for low, _high in found)


# --- number, quantity, uri ----------------------------------------------------------------


def test_extract_rows_value_quantity() -> None:
    obs = example("Observation-jp-observation-bodyMeasurement-example-1")
    assert rows(obs, "quantity", "value-quantity") == [
        (Decimal("63.5"), Decimal("63.45"), Decimal("63.55"), None, None, "kg")
    ]
    ucum = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "BW"},
        "valueQuantity": {
            "value": 100,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }
    assert rows(ucum, "quantity", "value-quantity") == [
        (Decimal(100), Decimal("99.5"), Decimal("100.5"), "http://unitsofmeasure.org", "kg", "kg")
    ]


def test_extract_rows_component_quantities_and_money() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "BP"},
        "component": [
            {"code": {"text": "sys"}, "valueQuantity": {"value": 120, "code": "mm[Hg]"}},
            {"code": {"text": "dia"}, "valueQuantity": {"value": 80.0, "code": "mm[Hg]"}},
        ],
    }
    values = [r[0] for r in rows(obs, "quantity", "component-value-quantity")]
    assert values == [Decimal(120), Decimal("80.0")]
    claim_like = {
        "resourceType": "ChargeItem",
        "status": "billable",
        "code": {"text": "visit"},
        "subject": {"reference": "Patient/p1"},
        "priceOverride": {"value": 5400, "currency": "JPY"},
    }
    assert rows(claim_like, "quantity", "price-override") == [
        (Decimal(5400), Decimal("5399.5"), Decimal("5400.5"), "urn:iso:std:iso:4217", "JPY", None)
    ]


def test_extract_rows_number_precision() -> None:
    ra = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "prediction": [{"probabilityDecimal": 0.25}, {"probabilityDecimal": 1.5}],
    }
    assert rows(ra, "number", "probability") == [
        (Decimal("0.25"), Decimal("0.245"), Decimal("0.255")),
        (Decimal("1.5"), Decimal("1.45"), Decimal("1.55")),
    ]


def test_extract_rows_uri() -> None:
    vs = {"resourceType": "ValueSet", "status": "active", "url": "http://jpfhir.jp/fhir/VS/x"}
    assert rows(vs, "uri", "url") == [("http://jpfhir.jp/fhir/VS/x",)]


# --- robustness ---------------------------------------------------------------------------


def test_extract_rows_malformed_values_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    patient = {
        "resourceType": "Patient",
        "birthDate": "1940-13-45",
        "name": [{"family": 12, "given": [None, "花子"]}],
        "gender": "female",
        "telecom": "not-a-list",
        "generalPractitioner": [{"reference": 5}, "Practitioner/1"],
    }
    with caplog.at_level(logging.WARNING):
        found = extract_rows("Patient", patient)
    assert found["date"] == []
    assert [r["value_exact"] for r in found["string"] if r["param"] == "given"] == ["花子"]
    assert [r["code"] for r in found["token"] if r["param"] == "gender"] == ["female"]


def test_extract_rows_every_jp_core_example_indexes() -> None:
    paths = sorted(EXAMPLES.glob("*.json"))
    assert len(paths) == 38
    for path in paths:
        content = json.loads(path.read_text(encoding="utf-8"))
        found = extract_rows(content["resourceType"], content, pk=7)
        total = sum(len(v) for v in found.values())
        assert total > 0, path.name
        for kind_rows in found.values():
            for row in kind_rows:
                assert row["resource_pk"] == 7 and row["res_type"] == content["resourceType"]


def test_plan_for_skips_composite_special_and_resource_columns() -> None:
    codes = {p.code for p in plan_for("Observation")}
    assert "code" in codes and "value-quantity" in codes and "_tag" in codes
    assert "code-value-quantity" not in codes  # composite
    assert "_id" not in codes and "_lastUpdated" not in codes
    assert "near" not in {p.code for p in plan_for("Location")}  # special


def test_extract_rows_is_fast_enough() -> None:
    patient = example("Patient-jp-patient-example-1")
    obs = example("Observation-jp-observation-vitalsigns-example-1")
    extract_rows("Patient", patient)
    extract_rows("Observation", obs)
    start = time.perf_counter()
    for _ in range(200):
        extract_rows("Patient", patient)
        extract_rows("Observation", obs)
    per_resource = (time.perf_counter() - start) / 400
    # ~0.2 ms on the 2-core CI machine; the bound leaves room for a loaded runner
    assert per_resource < 0.002


def test_extract_rows_instants_are_exact_points() -> None:
    event = {
        "resourceType": "AuditEvent",
        "type": {"code": "rest"},
        "recorded": "2026-04-01T09:00:00+09:00",
        "agent": [{"requestor": True}],
        "source": {"observer": {"reference": "Device/d1"}},
    }
    assert rows(event, "date", "date") == [(utc(2026, 4, 1), utc(2026, 4, 1))]
    # the same text as a dateTime covers its whole second
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "effectiveDateTime": "2026-04-01T09:00:00+09:00",
        "issued": "2026-04-01T09:00:00+09:00",
    }
    assert rows(obs, "date", "date") == [(utc(2026, 4, 1), utc(2026, 4, 1, 0, 0, 0, 999999))]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "value",
                    "system",
                    "code",
                    "coding",
                    "text",
                    "reference",
                    "start",
                    "end",
                    "family",
                    "given",
                    "line",
                    "low",
                    "high",
                    "event",
                    "repeat",
                    "boundsPeriod",
                    "identifier",
                    "type",
                    "url",
                    "extension",
                    "valueCode",
                    "currency",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    res_type=st.sampled_from(["Patient", "Observation", "Encounter", "MedicationRequest"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "name",
                "identifier",
                "birthDate",
                "telecom",
                "address",
                "code",
                "subject",
                "effectiveDateTime",
                "effectivePeriod",
                "valueQuantity",
                "component",
                "period",
                "dosageInstruction",
                "meta",
                "deceasedBoolean",
                "generalPractitioner",
            ]
        ),
        _json,
        max_size=6,
    ),
)
def test_extract_rows_never_raises(res_type: str, fields: dict[str, Any]) -> None:
    found = extract_rows(res_type, {"resourceType": res_type, **fields})
    assert set(found) == {"string", "token", "reference", "date", "number", "quantity", "uri"}


def test_skipping_absent_elements_finds_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    # plan.parts lets extraction skip expressions whose elements the resource lacks and
    # evaluate a union part once for every parameter naming it; over every JP
    # Core example (and the demo's clinical resources) the rows must be the same as when
    # every whole expression is evaluated
    import dataclasses
    import json
    import random
    from datetime import UTC, datetime

    from renkei.demo import clinical, generate
    from renkei.fhir.search import extract
    from tests.conftest import JPCORE_EXAMPLES

    bodies = [json.loads(p.read_text()) for p in sorted(JPCORE_EXAMPLES.glob("*.json"))]
    rng = random.Random(1)
    patient = generate.patient(rng, 1)
    entries = clinical.patient_entries(
        rng, "k", patient, clinic="Organization/c", team=[], now=datetime(2026, 4, 1, tzinfo=UTC)
    )
    bodies += [patient, *(e["resource"] for e in entries)]
    bodies = [b for b in bodies if isinstance(b, dict) and b.get("resourceType")]
    assert len(bodies) > 50
    skipping = [extract.extract_rows(b["resourceType"], b) for b in bodies]
    assert any(roots is not None for p in extract.plan_for("Observation") for *_, roots in p.parts)
    every = {
        t: tuple(
            dataclasses.replace(p, parts=((p.expression, p.evaluate, None),))
            for p in extract.plan_for(t)
        )
        for t in {b["resourceType"] for b in bodies}
    }
    monkeypatch.setattr(extract, "plan_for", lambda t: every[t])
    assert [extract.extract_rows(b["resourceType"], b) for b in bodies] == skipping
