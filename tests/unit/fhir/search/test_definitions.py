"""The registry is read from the official R4 bundle and JP Core, split per resource type."""

from __future__ import annotations

from renkei.fhir.search.definitions import (
    get_param,
    param_by_url,
    params_for,
    resource_types,
    split_union,
)


def test_params_for_loads_every_official_type() -> None:
    # 1378 R4 definitions over 133 resource types, plus 8 from JP Core
    assert len(resource_types()) >= 130
    assert len(params_for("Patient")) >= 30
    assert len(params_for("Observation")) >= 40


def test_params_for_includes_resource_level_parameters() -> None:
    patient = params_for("Patient")
    for code in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_text"):
        assert code in patient
    assert patient["_lastUpdated"].type == "date"
    assert patient["_tag"].expression == "Resource.meta.tag"
    # Bundle is a Resource, not a DomainResource: no narrative to search
    assert "_text" not in params_for("Bundle")
    assert "_id" in params_for("Bundle")


def test_get_param_splits_union_expressions_per_type() -> None:
    assert get_param("Patient", "name").expression == "Patient.name"
    assert get_param("Practitioner", "phonetic").expression == "Practitioner.name"
    code = get_param("Condition", "code")
    assert code is not None and code.expression == "Condition.code"
    onset = get_param("Condition", "onset-date")
    assert onset is not None
    assert onset.expression == "Condition.onset.as(dateTime) | Condition.onset.as(Period)"
    assert get_param("Patient", "no-such-thing") is None


def test_get_param_binds_untyped_parts_to_their_base() -> None:
    name = get_param("InsurancePlan", "name")
    assert name is not None and name.expression == "InsurancePlan.name | InsurancePlan.alias"


def test_get_param_reads_types_targets_and_defaults() -> None:
    subject = get_param("Observation", "subject")
    assert subject is not None and subject.type == "reference"
    assert "Patient" in subject.target and "Group" in subject.target
    birthdate = get_param("Patient", "birthdate")
    assert birthdate is not None and birthdate.type == "date"
    assert "ge" in birthdate.comparators and "sa" in birthdate.comparators
    identifier = get_param("Patient", "identifier")
    assert identifier is not None and "of-type" in identifier.modifiers
    assert get_param("Observation", "code") is not None
    assert get_param("Observation", "code").description == "The code of the observation type"  # type: ignore[union-attr]


def test_get_param_knows_jp_core_parameters() -> None:
    kana = get_param("Patient", "jp-kana-sort")
    assert kana is not None and kana.type == "string"
    assert kana.url == "http://jpfhir.jp/fhir/core/SearchParameter/JP_Patient_KanaSort_SP"
    assert kana.expression is not None and "'SYL'" in kana.expression
    start = get_param("MedicationRequest", "jp-medication-start")
    assert start is not None and start.type == "date"
    assert get_param("Coverage", "jp-insured-personnumber") is not None
    assert get_param("Organization", "jp-prefectureno") is not None


def test_get_param_keeps_composite_components() -> None:
    cvq = get_param("Observation", "code-value-quantity")
    assert cvq is not None and cvq.type == "composite"
    assert cvq.components == (
        ("http://hl7.org/fhir/SearchParameter/clinical-code", "code"),
        ("http://hl7.org/fhir/SearchParameter/Observation-value-quantity", "value.as(Quantity)"),
    )


def test_param_by_url_picks_the_type() -> None:
    url = "http://hl7.org/fhir/SearchParameter/clinical-code"
    obs = param_by_url(url, "Observation")
    assert obs is not None and obs.res_type == "Observation" and obs.code == "code"
    assert obs.expression == "Observation.code"
    any_base = param_by_url(url)
    assert any_base is not None and any_base.code == "code"
    assert param_by_url("http://example.org/nothing") is None


def test_split_union_respects_parentheses_and_quotes() -> None:
    assert split_union("(A.x as B) | A.y.where(z = '|')") == ["(A.x as B)", "A.y.where(z = '|')"]
    assert split_union("Patient.name") == ["Patient.name"]


def test_params_for_is_cached() -> None:
    assert params_for("Patient") is params_for("Patient")
