"""String parameters (https://hl7.org/fhir/R4/search.html#string), with Japanese names."""

from __future__ import annotations

from tests.integration.search.conftest import Fhir, jp_name, patient


def test_string_default_is_case_insensitive_starts_with(fhir: Fhir) -> None:
    # spec: given=eve matches Eve and Evelyn, not Severine
    eve = fhir.create(patient(name=[{"given": ["Eve"]}]))
    evelyn = fhir.create(patient(name=[{"given": ["Evelyn"]}]))
    fhir.create(patient(name=[{"given": ["Severine"]}]))
    assert fhir.ids("Patient?given=eve") == {eve, evelyn}


def test_string_contains(fhir: Fhir) -> None:
    eve = fhir.create(patient(name=[{"given": ["Eve"]}]))
    evelyn = fhir.create(patient(name=[{"given": ["Evelyn"]}]))
    severine = fhir.create(patient(name=[{"given": ["Severine"]}]))
    fhir.create(patient(name=[{"given": ["Adam"]}]))
    assert fhir.ids("Patient?given:contains=eve") == {eve, evelyn, severine}


def test_string_exact_is_case_and_accent_sensitive(fhir: Fhir) -> None:
    eve = fhir.create(patient(name=[{"given": ["Eve"]}]))
    fhir.create(patient(name=[{"given": ["Evelyn"]}]))
    fhir.create(patient(name=[{"given": ["eve"]}]))
    assert fhir.ids("Patient?given:exact=Eve") == {eve}


def test_string_accents_are_ignored(fhir: Fhir) -> None:
    jose = fhir.create(patient(name=[{"family": "José"}]))
    assert fhir.ids("Patient?family=jose") == {jose}
    assert fhir.ids("Patient?family=JOSÉ") == {jose}


def test_string_hiragana_finds_katakana_and_half_width(fhir: Fhir) -> None:
    full = fhir.create(patient(name=[{"family": "ヤマダ", "given": ["タロウ"]}]))
    half = fhir.create(patient(name=[{"family": "ﾔﾏﾀﾞ", "given": ["ﾊﾅｺ"]}]))
    fhir.create(patient(name=[{"family": "ヤマモト"}]))
    fhir.create(patient(name=[{"family": "ヤマタ"}]))  # タ without dakuten is another name
    assert fhir.ids("Patient?name=やまだ") == {full, half}
    assert fhir.ids("Patient?family=ﾔﾏﾀﾞ") == {full, half}
    assert fhir.ids("Patient?given=はなこ") == {half}


def test_string_full_width_latin_is_folded(fhir: Fhir) -> None:
    pid = fhir.create(patient(name=[{"family": "Ｙａｍａｄａ"}]))
    assert fhir.ids("Patient?family=yamada") == {pid}


def test_string_kanji_as_written(fhir: Fhir) -> None:
    yamada = fhir.create(patient(name=jp_name("山田", "花子", "ヤマダ", "ハナコ")))
    fhir.create(patient(name=[{"family": "山本"}]))
    assert fhir.ids("Patient?family=山田") == {yamada}
    assert fhir.ids("Patient?family=山") == {yamada} | fhir.ids("Patient?family=山本")
    # kanji are not read as kana: やまだ finds the SYL name, not the kanji
    assert fhir.ids("Patient?family=やまだ") == {yamada}
    assert fhir.ids("Patient?name=花子") == {yamada}


def test_string_ide_and_syl_names_both_searchable(fhir: Fhir) -> None:
    pid = fhir.create(patient(name=jp_name("佐藤", "一郎", "サトウ", "イチロウ")))
    assert fhir.ids("Patient?name=佐藤") == {pid}
    assert fhir.ids("Patient?name=さとう") == {pid}
    assert fhir.ids("Patient?name:exact=サトウ") == {pid}
    assert fhir.ids("Patient?name:exact=さとう") == set()


def test_string_name_matches_text_and_parts(fhir: Fhir) -> None:
    pid = fhir.create(patient(name=[{"text": "山田 花子"}]))
    assert fhir.ids("Patient?name=山田") == {pid}
    assert fhir.ids("Patient?name=山田 花子") == {pid}


def test_string_or_values(fhir: Fhir) -> None:
    a = fhir.create(patient(name=[{"family": "Chalmers"}]))
    b = fhir.create(patient(name=[{"family": "Windsor"}]))
    fhir.create(patient(name=[{"family": "Other"}]))
    assert fhir.ids("Patient?family=chal,wind") == {a, b}


def test_string_repeated_parameter_is_and(fhir: Fhir) -> None:
    both = fhir.create(patient(name=[{"family": "Chalmers", "given": ["Peter"]}]))
    fhir.create(patient(name=[{"family": "Chalmers", "given": ["Jim"]}]))
    assert fhir.ids("Patient?family=chalmers&given=pet") == {both}


def test_string_address_parts(fhir: Fhir) -> None:
    tokyo = fhir.create(
        patient(address=[{"text": "東京都新宿区西新宿2-8-1", "city": "新宿区", "state": "東京都"}])
    )
    fhir.create(patient(address=[{"city": "大阪市", "state": "大阪府"}]))
    assert fhir.ids("Patient?address-state=東京都") == {tokyo}
    assert fhir.ids("Patient?address:contains=西新宿") == {tokyo}
    assert fhir.ids("Patient?address-city=新宿") == {tokyo}


def test_string_like_wildcards_are_literal(fhir: Fhir) -> None:
    fhir.create(patient(name=[{"family": "Smith"}]))
    pct = fhir.create(patient(name=[{"family": "100%_sure"}]))
    assert fhir.ids("Patient?family=%25") == set()
    assert fhir.ids("Patient?family=_") == set()
    assert fhir.ids("Patient?family:contains=%25_") == {pct}


def test_string_missing(fhir: Fhir) -> None:
    named = fhir.create(patient(name=[{"family": "Named"}]))
    unnamed = fhir.create(patient(gender="male"))
    assert fhir.ids("Patient?family:missing=true") == {unnamed}
    assert fhir.ids("Patient?family:missing=false") == {named}


def test_string_jpcore_kana_sort_parameter_searches_and_sorts(fhir: Fhir) -> None:
    # JP Core's own SearchParameter jp-kana-sort: the usual SYL (kana) name's text
    ide = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"

    def kana(text: str) -> dict[str, object]:
        return {"extension": [{"url": ide, "valueCode": "SYL"}], "use": "usual", "text": text}

    yamada = fhir.create(patient(name=[{"text": "山田 花子"}, kana("ヤマダ ハナコ")]))
    abe = fhir.create(patient(name=[{"text": "阿部 一郎"}, kana("アベ イチロウ")]))
    sato = fhir.create(patient(name=[{"text": "佐藤 次郎"}, kana("サトウ ジロウ")]))
    assert fhir.ids("Patient?jp-kana-sort=やまだ") == {yamada}
    assert fhir.ordered("Patient?_sort=jp-kana-sort") == [abe, sato, yamada]
    assert fhir.ordered("Patient?_sort=-jp-kana-sort") == [yamada, sato, abe]


def test_string_jpcore_coverage_numbers_full_width(fhir: Fhir) -> None:
    # JP Core's Coverage example writes 記号・番号 in full-width digits (１２－３４, ５６７８)
    import json
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "data" / "jpcore"  # tests/data/jpcore
    body = json.loads(
        (examples / "Coverage-jp-coverage-example-1.json").read_text(encoding="utf-8")
    )
    cid = fhir.create(body)
    assert fhir.ids("Coverage?jp-insured-personnumber=5678") == {cid}
    assert fhir.ids("Coverage?jp-insured-personsymbol=12-34") == {cid}
    assert fhir.ids("Coverage?jp-insured-personsubnumber:exact=００") == {cid}
    assert fhir.ids("Coverage?jp-insured-personnumber=9999") == set()
