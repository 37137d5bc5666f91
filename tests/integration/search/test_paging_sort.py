"""_count, paging links, _sort and _total (https://hl7.org/fhir/R4/search.html#count,
#sort, #total; https://hl7.org/fhir/R4/http.html#paging).

Paging is by keyset with a snapshot bound: resources created while a client pages through
a result never make an entry appear twice or go missing.
"""

from __future__ import annotations

from typing import Any

from renkei.clock import ManualClock
from tests.integration.search.conftest import Fhir, link, match_ids, patient


def walk(fhir: Fhir, query: str, between: Any = None) -> list[str]:
    """Follow next links to the end; ``between(page_no)`` runs after each page."""
    seen: list[str] = []
    page: str | None = query
    n = 0
    while page:
        bundle = fhir.search(page)
        seen.extend(match_ids(bundle))
        n += 1
        if between:
            between(n)
        page = link(bundle, "next")
        assert n < 100
    return seen


def test_count_default_and_next_link(fhir: Fhir) -> None:
    created = [fhir.create(patient(gender="female")) for _ in range(23)]
    first = fhir.search("Patient?_total=accurate")
    assert len(match_ids(first)) == 20  # default _count, documented in the CapabilityStatement
    assert first["total"] == 23
    assert link(first, "previous") is None
    second = fhir.search(link(first, "next") or "")
    assert match_ids(first) + match_ids(second) == created
    assert link(second, "next") is None
    assert second["total"] == 23


def test_default_total_only_when_the_first_page_holds_every_match(fhir: Fhir) -> None:
    # counting every match of a broad search can cost more than the page: without _total
    # the server gives Bundle.total only when it knows it for free (CapabilityStatement)
    for _ in range(4):
        fhir.create(patient(gender="female"))
    assert fhir.search("Patient?gender=female")["total"] == 4
    assert fhir.search("Patient?gender=male")["total"] == 0
    first = fhir.search("Patient?gender=female&_count=3")
    assert "total" not in first
    assert "total" not in fhir.search(link(first, "next") or "")
    assert fhir.search("Patient?gender=female&_count=3&_total=accurate")["total"] == 4
    assert fhir.search("Patient?gender=female&_count=3&_total=estimate")["total"] == 4
    assert fhir.search("Patient?gender=female&_count=0")["total"] == 4


def test_count_is_capped(fhir: Fhir) -> None:
    for _ in range(3):
        fhir.create(patient())
    bundle = fhir.search("Patient?_count=100000")
    assert len(match_ids(bundle)) == 3


def test_count_zero_gives_total_only(fhir: Fhir) -> None:
    for _ in range(3):
        fhir.create(patient())
    bundle = fhir.search("Patient?_count=0")
    assert bundle["total"] == 3 and "entry" not in bundle


def test_previous_link_returns_the_same_page(fhir: Fhir) -> None:
    for i in range(7):
        fhir.create(patient(name=[{"family": f"F{i % 3}"}]))
    p1 = fhir.search("Patient?_count=3&_sort=family")
    p2 = fhir.search(link(p1, "next") or "")
    p3 = fhir.search(link(p2, "next") or "")
    assert len(match_ids(p3)) == 1 and link(p3, "next") is None
    back2 = fhir.search(link(p3, "previous") or "")
    assert match_ids(back2) == match_ids(p2)
    back1 = fhir.search(link(back2, "previous") or "")
    assert match_ids(back1) == match_ids(p1)
    assert link(back1, "previous") is None
    assert match_ids(fhir.search(link(back1, "next") or "")) == match_ids(p2)


def test_paging_stable_under_concurrent_inserts(fhir: Fhir) -> None:
    # Another client keeps creating matching patients whose names sort before, between
    # and after the current page; the pager must see each original patient exactly once.
    names = [
        "アベ",
        "イトウ",
        "ウエダ",
        "エンドウ",
        "オオタ",
        "カトウ",
        "キムラ",
        "クドウ",
        "ケンモチ",
    ]
    original = {fhir.create(patient(name=[{"family": n}], gender="female")) for n in names}
    inserted: list[str] = []

    def insert(page_no: int) -> None:
        for n in ("アア", f"カ{page_no}", "ンン"):
            inserted.append(fhir.create(patient(name=[{"family": n}], gender="female")))

    for query in (
        "Patient?gender=female&_count=2&_sort=family",
        "Patient?gender=female&_count=2",
        "Patient?gender=female&_count=2&_sort=-_lastUpdated,family",
    ):
        seen = walk(fhir, query, insert)
        assert len(seen) == len(set(seen)), "an entry was repeated"
        assert set(seen) == original, "an entry was skipped, or a new one leaked in"
        original |= set(inserted)  # the next walk starts after these inserts
        inserted.clear()


def test_paging_with_ties_and_missing_sort_values(fhir: Fhir) -> None:
    ids = [fhir.create(patient(name=[{"family": "同姓"}])) for _ in range(5)]
    ids += [fhir.create(patient()) for _ in range(3)]  # no name: sorted last
    seen = walk(fhir, "Patient?_count=3&_sort=family")
    assert seen == ids
    seen_desc = walk(fhir, "Patient?_count=3&_sort=-family")
    assert seen_desc == ids  # ties broken by creation order; missing values still last


def test_sort_by_date_both_directions(fhir: Fhir) -> None:
    a = fhir.create(patient(birthDate="1940-01-01"))
    b = fhir.create(patient(birthDate="1935-06-15"))
    c = fhir.create(patient(birthDate="1950-12-31"))
    assert fhir.ordered("Patient?_sort=birthdate") == [b, a, c]
    assert fhir.ordered("Patient?_sort=-birthdate") == [c, a, b]


def test_sort_multiple_keys(fhir: Fhir) -> None:
    a = fhir.create(patient(name=[{"family": "タナカ"}], birthDate="1940-01-01"))
    b = fhir.create(patient(name=[{"family": "タナカ"}], birthDate="1950-01-01"))
    c = fhir.create(patient(name=[{"family": "アベ"}], birthDate="1945-01-01"))
    assert fhir.ordered("Patient?_sort=family,-birthdate") == [c, b, a]
    assert fhir.ordered("Patient?_sort=-family,birthdate") == [a, b, c]


def test_sort_kana_insensitive(fhir: Fhir) -> None:
    # hiragana, katakana and half-width kana sort together by their folded form
    a = fhir.create(patient(name=[{"family": "ｱｵｷ"}]))
    b = fhir.create(patient(name=[{"family": "いとう"}]))
    c = fhir.create(patient(name=[{"family": "ウエノ"}]))
    assert fhir.ordered("Patient?_sort=family") == [a, b, c]


def test_sort_by_token_number_and_reference(fhir: Fhir) -> None:
    m = fhir.create(patient(gender="male"))
    f = fhir.create(patient(gender="female"))
    assert fhir.ordered("Patient?_sort=gender") == [f, m]
    r_hi = fhir.create(
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "Patient/b"},
            "prediction": [{"probabilityDecimal": 0.9}],
        }
    )
    r_lo = fhir.create(
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "Patient/a"},
            "prediction": [{"probabilityDecimal": 0.1}],
        }
    )
    assert fhir.ordered("RiskAssessment?_sort=probability") == [r_lo, r_hi]
    assert fhir.ordered("RiskAssessment?_sort=-probability") == [r_hi, r_lo]
    assert fhir.ordered("RiskAssessment?_sort=subject") == [r_lo, r_hi]


def test_sort_by_last_updated_and_id(fhir: Fhir, clock: ManualClock) -> None:
    fhir.put(patient(id="b-patient"))
    clock.advance(minutes=1)
    fhir.put(patient(id="a-patient"))
    assert fhir.ordered("Patient?_sort=_lastUpdated") == ["b-patient", "a-patient"]
    assert fhir.ordered("Patient?_sort=-_lastUpdated") == ["a-patient", "b-patient"]
    assert fhir.ordered("Patient?_sort=_id") == ["a-patient", "b-patient"]


def test_total_modes(fhir: Fhir) -> None:
    for _ in range(3):
        fhir.create(patient())
    assert "total" not in fhir.search("Patient?_total=none")
    assert fhir.search("Patient?_total=accurate&_count=1")["total"] == 3
    assert fhir.search("Patient?_total=estimate&_count=1")["total"] == 3


def test_self_link_keeps_parameters(fhir: Fhir) -> None:
    bundle = fhir.search("Patient?gender=female&_count=5&_sort=-birthdate")
    assert link(bundle, "self") == "Patient?gender=female&_count=5&_sort=-birthdate"


def test_bad_cursor_is_400(fhir: Fhir) -> None:
    assert "_cursor" in fhir.error("Patient?_cursor=garbage!")


def test_cursor_from_another_sort_is_400(fhir: Fhir) -> None:
    for _ in range(3):
        fhir.create(patient())
    nxt = link(fhir.search("Patient?_count=1&_sort=family,birthdate"), "next") or ""
    tampered = nxt.replace("_sort=family%2Cbirthdate", "_sort=family")
    assert "cursor" in fhir.error(tampered)


def test_first_page_total_with_sort_and_filters(fhir: Fhir) -> None:
    # the first page and Bundle.total come from one statement: the total counts every
    # match, not the page, and the next pages reuse it
    ids = [
        fhir.create(
            patient(gender="female", name=[{"family": f"姓{n % 3}"}], birthDate=f"19{40 + n}")
        )
        for n in range(7)
    ]
    fhir.create(patient(gender="male", name=[{"family": "姓0"}]))
    first = fhir.search("Patient?gender=female&_sort=family,-birthdate&_count=3&_total=accurate")
    assert first["total"] == 7
    order = walk(fhir, "Patient?gender=female&_sort=family,-birthdate&_count=3")
    by_key = sorted(range(7), key=lambda n: (n % 3, -n))
    assert order == [ids[n] for n in by_key]
    nxt = link(first, "next")
    assert nxt is not None and fhir.search(nxt)["total"] == 7
    assert fhir.search("Patient?gender=other&_sort=family&_total=accurate")["total"] == 0
    assert "total" not in fhir.search("Patient?gender=female&_sort=family&_total=none")
