"""parse_search: query strings to typed filters, with the spec's own examples
(https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from renkei.fhir.outcome import BadRequest
from renkei.fhir.search.parse import (
    ChainFilter,
    HasFilter,
    Include,
    ParamFilter,
    SortKey,
    parse_search,
)
from renkei.fhir.search.values import (
    DateValue,
    QuantityValue,
    ReferenceValue,
    TokenValue,
    parse_date,
    parse_number,
    split_unescaped,
)

JST = ZoneInfo("Asia/Tokyo")


def only(req: object) -> ParamFilter:
    filters = req.filters  # type: ignore[attr-defined]
    assert len(filters) == 1
    f = filters[0]
    assert isinstance(f, ParamFilter)
    return f


def test_parse_search_string_keeps_value_and_modifier() -> None:
    f = only(parse_search("Patient", [("name:exact", "山田")]))
    assert (f.code, f.type, f.modifier, f.values) == ("name", "string", "exact", ("山田",))


def test_parse_search_comma_is_or_and_repeat_is_and() -> None:
    req = parse_search("Patient", [("given", "eve,evelyn"), ("given", "x")])
    assert [f.values for f in req.filters] == [("eve", "evelyn"), ("x",)]  # type: ignore[union-attr]


def test_parse_search_escaped_comma_is_kept() -> None:
    f = only(parse_search("Patient", [("name", r"a\,b")]))
    assert f.values == ("a,b",)


def test_parse_search_empty_value_is_ignored() -> None:
    assert parse_search("Patient", [("name", "")]).filters == ()


def test_parse_search_token_forms() -> None:
    f = only(
        parse_search(
            "Patient",
            [("identifier", "http://acme.org/patient|2345,|abc,http://acme.org/patient|,2345")],
        )
    )
    assert f.values == (
        TokenValue("http://acme.org/patient", "2345"),
        TokenValue("", "abc"),
        TokenValue("http://acme.org/patient", None),
        TokenValue(None, "2345"),
    )


def test_parse_search_token_of_type() -> None:
    f = only(
        parse_search(
            "Patient",
            [("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053")],
        )
    )
    assert f.values == (TokenValue("http://terminology.hl7.org/CodeSystem/v2-0203", "MR|446053"),)


def test_parse_search_of_type_needs_three_parts() -> None:
    with pytest.raises(BadRequest, match="of-type"):
        parse_search("Patient", [("identifier:of-type", "MR|446053")])


def test_parse_search_reference_forms() -> None:
    f = only(parse_search("Observation", [("subject", "Patient/23,23")]))
    assert f.values == (ReferenceValue("Patient", "23"), ReferenceValue(None, "23"))
    f = only(parse_search("Observation", [("subject:Patient", "23")]))
    assert f.values == (ReferenceValue("Patient", "23"),)
    f = only(parse_search("Observation", [("subject", "http://example.org/fhir/Patient/23")]))
    assert f.values == (ReferenceValue("Patient", "23", "http://example.org/fhir/Patient/23"),)


def test_parse_search_reference_identifier_is_a_token() -> None:
    f = only(parse_search("Observation", [("subject:identifier", "urn:oid:1.2.36|12345")]))
    assert f.modifier == "identifier"
    assert f.values == (TokenValue("urn:oid:1.2.36", "12345"),)


def test_parse_search_reference_type_modifier_must_be_a_target() -> None:
    with pytest.raises(BadRequest, match="Medication"):
        parse_search("Observation", [("subject:Medication", "1")])


def test_parse_search_date_is_jst_without_offset() -> None:
    f = only(parse_search("Patient", [("birthdate", "1940")], zone=JST))
    (v,) = f.values
    assert isinstance(v, DateValue)
    assert v.prefix == "eq"
    assert v.low == datetime(1939, 12, 31, 15, tzinfo=UTC)
    assert v.high == datetime(1940, 12, 31, 14, 59, 59, 999999, tzinfo=UTC)


def test_parse_search_date_every_prefix() -> None:
    prefixes = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
    raw = ",".join(f"{p}2013-01-14" for p in prefixes)
    f = only(parse_search("Observation", [("date", raw)]))
    assert [v.prefix for v in f.values] == prefixes


def test_parse_search_date_bad_prefix_is_400() -> None:
    with pytest.raises(BadRequest, match="prefix"):
        parse_search("Patient", [("birthdate", "xx1940")])


def test_parse_search_malformed_date_is_400() -> None:
    with pytest.raises(BadRequest, match="not a FHIR date"):
        parse_search("Patient", [("birthdate", "1940-1")])
    with pytest.raises(BadRequest, match="1940-13"):
        parse_search("Patient", [("birthdate", "1940-13")])
    with pytest.raises(BadRequest):
        parse_search("Patient", [("birthdate", "2023-02-30")])


def test_parse_date_precisions() -> None:
    month = parse_date("2013-02", "date", JST)
    assert month.high == datetime(2013, 2, 28, 14, 59, 59, 999999, tzinfo=UTC)
    minute = parse_date("2013-01-14T10:00Z", "date", JST)
    assert (minute.low, minute.high) == (
        datetime(2013, 1, 14, 10, tzinfo=UTC),
        datetime(2013, 1, 14, 10, 0, 59, 999999, tzinfo=UTC),
    )
    offset = parse_date("2013-01-14T10:00:00+05:00", "date", JST)
    assert offset.low == datetime(2013, 1, 14, 5, tzinfo=UTC)


def test_parse_number_precision_ranges() -> None:
    assert (parse_number("100", "n").low, parse_number("100", "n").high) == (
        Decimal("99.5"),
        Decimal("100.5"),
    )
    assert parse_number("100.00", "n").low == Decimal("99.995")
    assert parse_number("1e2", "n").high == Decimal("150")
    with pytest.raises(BadRequest):
        parse_number("one", "n")


def test_parse_search_quantity_forms() -> None:
    f = only(
        parse_search(
            "Observation",
            [("value-quantity", "5.4|http://unitsofmeasure.org|mg,lt5.4||mg,5.4")],
        )
    )
    a, b, c = f.values
    assert isinstance(a, QuantityValue) and a.system == "http://unitsofmeasure.org"
    assert isinstance(b, QuantityValue) and (b.number.prefix, b.system, b.code) == (
        "lt",
        None,
        "mg",
    )
    assert isinstance(c, QuantityValue) and c.code is None


def test_parse_search_composite_splits_on_dollar() -> None:
    f = only(
        parse_search("Observation", [("code-value-quantity", "http://loinc.org|8480-6$gt100")])
    )
    (parts,) = f.values
    token, quantity = parts
    assert (token.code, token.values) == ("code", (TokenValue("http://loinc.org", "8480-6"),))
    assert quantity.code == "value-quantity"
    assert quantity.values[0].number.prefix == "gt"


def test_parse_search_composite_wrong_arity_is_400() -> None:
    with pytest.raises(BadRequest, match=r"\$-separated"):
        parse_search("Observation", [("code-value-quantity", "http://loinc.org|8480-6")])


def test_parse_search_missing_takes_boolean() -> None:
    f = only(parse_search("Patient", [("gender:missing", "true")]))
    assert f.missing is True
    with pytest.raises(BadRequest, match="missing"):
        parse_search("Patient", [("gender:missing", "yes")])


def test_parse_search_unknown_parameter_is_400() -> None:
    with pytest.raises(BadRequest, match="unknown search parameter 'nosuch'"):
        parse_search("Patient", [("nosuch", "1")])


def test_parse_search_unknown_modifier_is_400() -> None:
    with pytest.raises(BadRequest, match=":below"):
        parse_search("Patient", [("birthdate:below", "1940")])


def test_parse_search_lenient_collects_ignored() -> None:
    req = parse_search(
        "Patient", [("nosuch", "1"), ("birthdate", "xx"), ("name", "a")], lenient=True
    )
    assert req.ignored == ("nosuch", "birthdate")
    assert req.used == (("name", "a"),)


def test_parse_search_chain_one_and_two_hops() -> None:
    (f,) = parse_search("Observation", [("subject.name", "やまだ")]).filters
    assert isinstance(f, ChainFilter)
    assert [t for t, _ in f.branches] == ["Patient", "Location"] or "Patient" in [
        t for t, _ in f.branches
    ]
    (g,) = parse_search(
        "Observation", [("subject:Patient.general-practitioner:Practitioner.name", "佐藤")]
    ).filters
    assert isinstance(g, ChainFilter)
    ((target, inner),) = g.branches
    assert target == "Patient" and isinstance(inner, ChainFilter)
    ((target2, leaf),) = inner.branches
    assert target2 == "Practitioner" and isinstance(leaf, ParamFilter) and leaf.code == "name"


def test_parse_search_chain_on_non_reference_is_400() -> None:
    with pytest.raises(BadRequest, match="cannot be chained"):
        parse_search("Patient", [("name.family", "x")])


def test_parse_search_has() -> None:
    (f,) = parse_search("Patient", [("_has:Observation:patient:code", "1234-5")]).filters
    assert isinstance(f, HasFilter)
    assert (f.source_type, f.ref_code) == ("Observation", "patient")
    assert isinstance(f.inner, ParamFilter) and f.inner.code == "code"


def test_parse_search_has_nested() -> None:
    (f,) = parse_search(
        "Patient", [("_has:Observation:patient:_has:AuditEvent:entity:agent", "MyUserId")]
    ).filters
    assert isinstance(f, HasFilter) and isinstance(f.inner, HasFilter)
    assert f.inner.source_type == "AuditEvent"


def test_parse_search_has_wrong_reference_is_400() -> None:
    with pytest.raises(BadRequest):
        parse_search("Patient", [("_has:Observation:nosuch:code", "1")])


def test_parse_search_result_parameters() -> None:
    req = parse_search(
        "Observation",
        [
            ("_sort", "-date,status,_lastUpdated"),
            ("_count", "10"),
            ("_summary", "true"),
            ("_total", "accurate"),
            ("_elements", "status,code"),
            ("_include", "Observation:subject"),
            ("_include:iterate", "Patient:general-practitioner:Practitioner"),
            ("_revinclude", "Provenance:target"),
        ],
    )
    assert req.sort == (
        SortKey("date", "date", True),
        SortKey("status", "token"),
        SortKey("_lastUpdated", "_lastUpdated"),
    )
    assert (req.count, req.summary, req.total, req.elements) == (
        10,
        "true",
        "accurate",
        ("status", "code"),
    )
    assert req.includes == (
        Include("Observation", "subject"),
        Include("Patient", "general-practitioner", "Practitioner", iterate=True),
    )
    assert req.revincludes == (Include("Provenance", "target"),)


def test_parse_search_bad_result_parameters_are_400() -> None:
    for params in (
        [("_count", "-1")],
        [("_count", "²")],
        [("_summary", "maybe")],
        [("_total", "all")],
        [("_sort", "nosuch")],
        [("_include", "Observation:code")],
        [("_include", "Patient:general-practitioner")],
    ):
        with pytest.raises(BadRequest):
            parse_search("Observation", params)


def test_parse_search_system_level_common_parameters() -> None:
    req = parse_search(None, [("_type", "Patient,Observation"), ("_lastUpdated", "gt2020")])
    assert req.types == ("Patient", "Observation")
    assert only(req).code == "_lastUpdated"


def test_parse_search_system_level_unknown_type_is_400() -> None:
    with pytest.raises(BadRequest, match="Patiento"):
        parse_search(None, [("_type", "Patiento")])


def test_parse_search_jpcore_parameter() -> None:
    f = only(parse_search("Patient", [("jp-kana-sort", "ヤマダ")]))
    assert f.type == "string"


def test_split_unescaped_spec_examples() -> None:
    assert split_unescaped(r"a\$b$c", "$") == ["a$b", "c"]
    assert split_unescaped(r"a\\,b", ",") == ["a\\", "b"]
