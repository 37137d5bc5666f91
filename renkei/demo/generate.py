"""A deterministic generator of JP Core-style resources, for the demo and the benchmarks.

Same seed, same resources: benchmark figures can be compared run to run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

#: JP Core: 医療機関等の患者ID (urn:oid:1.2.392.100495.20.3.51 + 1 + 医療機関コード10桁)
PATIENT_ID_SYSTEM_PREFIX = "urn:oid:1.2.392.100495.20.3.51.1"
#: JP Core: 保険医療機関番号 (10 digits)
INSTITUTION_NO_SYSTEM = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no"
IDE = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"

FAMILY = [
    ("山田", "ヤマダ"), ("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"),
    ("田中", "タナカ"), ("伊藤", "イトウ"), ("渡辺", "ワタナベ"), ("中村", "ナカムラ"),
    ("小林", "コバヤシ"), ("加藤", "カトウ"), ("吉田", "ヨシダ"), ("山本", "ヤマモト"),
    ("松本", "マツモト"), ("井上", "イノウエ"), ("木村", "キムラ"), ("林", "ハヤシ"),
    ("斎藤", "サイトウ"), ("清水", "シミズ"), ("山口", "ヤマグチ"), ("森", "モリ"),
]  # fmt: skip
GIVEN_F = [
    ("花子", "ハナコ"), ("幸子", "サチコ"), ("和子", "カズコ"), ("節子", "セツコ"),
    ("京子", "キョウコ"), ("美智子", "ミチコ"), ("久子", "ヒサコ"), ("千代", "チヨ"),
]  # fmt: skip
GIVEN_M = [
    ("太郎", "タロウ"), ("一郎", "イチロウ"), ("茂", "シゲル"), ("清", "キヨシ"),
    ("博", "ヒロシ"), ("勇", "イサム"), ("実", "ミノル"), ("正男", "マサオ"),
]  # fmt: skip
CITIES = ["世田谷区", "杉並区", "練馬区", "大田区", "足立区"]


def jp_name(family: tuple[str, str], given: tuple[str, str]) -> list[dict[str, Any]]:
    """A JP Core name pair: kanji (IDE) and kana (SYL)."""
    return [
        {
            "extension": [{"url": IDE, "valueCode": "IDE"}],
            "use": "official",
            "text": f"{family[0]} {given[0]}",
            "family": family[0],
            "given": [given[0]],
        },
        {
            "extension": [{"url": IDE, "valueCode": "SYL"}],
            "use": "official",
            "text": f"{family[1]} {given[1]}",
            "family": family[1],
            "given": [given[1]],
        },
    ]


def patient(rng: random.Random, n: int, institution_no: str = "1312345678") -> dict[str, Any]:
    female = rng.random() < 0.62  # most of the 85+ are women
    family = rng.choice(FAMILY)
    given = rng.choice(GIVEN_F if female else GIVEN_M)
    born = date(1928, 1, 1) + timedelta(days=rng.randrange(0, 365 * 22))
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": f"{PATIENT_ID_SYSTEM_PREFIX}.{institution_no}", "value": f"{n:08d}"}
        ],
        "active": True,
        "name": jp_name(family, given),
        "telecom": [
            {"system": "phone", "value": f"03-{rng.randrange(1000, 9999)}-{n % 10000:04d}"}
        ],
        "gender": "female" if female else "male",
        "birthDate": born.isoformat(),
        "address": [
            {
                "text": f"東京都{rng.choice(CITIES)}{rng.randrange(1, 9)}-{rng.randrange(1, 30)}",
                "state": "東京都",
                "country": "JP",
            }
        ],
    }


def observation(rng: random.Random, patient_ref: str, when: str) -> dict[str, Any]:
    """A JP Core body-temperature vital sign."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5", "display": "体温"}]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": round(rng.uniform(35.8, 38.9), 1),
            "unit": "Cel",
            "system": "http://unitsofmeasure.org",
            "code": "Cel",
        },
    }


def patients(seed: int, count: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for n in range(1, count + 1):
        yield patient(rng, n)
