"""Clinically plausible home-care histories for the demo network (deterministic per seed).

Typical 在宅 (home-care) patients: heart failure, COPD, dementia, stroke sequelae, end-of-
life cancer care; their medicines, allergies, a week of vital signs from visiting nurses,
care level (要介護度), advance care planning (人生会議), family contacts, a care team and the
patient's consent to share with it.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from renkei.fhir.capability import RENKEI_CODESYSTEM

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"

#: (ICD-10, 病名, medicines for it)
PROBLEMS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "I50.9",
        "慢性心不全",
        [
            ("フロセミド錠20mg", "1回1錠 1日1回 朝食後"),
            ("ビソプロロールフマル酸塩錠2.5mg", "1回1錠 1日1回 朝食後"),
        ],
    ),
    ("J44.9", "慢性閉塞性肺疾患", [("チオトロピウム吸入用カプセル18μg", "1日1回1吸入")]),
    ("F03", "認知症", [("ドネペジル塩酸塩錠5mg", "1回1錠 1日1回 朝食後")]),
    ("I69.3", "脳梗塞後遺症", [("クロピドグレル錠75mg", "1回1錠 1日1回 朝食後")]),
    ("E11.9", "2型糖尿病", [("メトホルミン塩酸塩錠250mg", "1回1錠 1日2回 朝夕食後")]),
    ("I10", "本態性高血圧症", [("アムロジピン錠5mg", "1回1錠 1日1回 朝食後")]),
    ("G20", "パーキンソン病", [("レボドパ・カルビドパ配合錠100mg", "1回1錠 1日3回 毎食後")]),
    ("C34.9", "肺癌（終末期）", [("オキシコドン徐放錠5mg", "1回1錠 1日2回 12時間毎")]),
    ("N18.9", "慢性腎臓病", []),
    ("L89.9", "褥瘡", []),
]
ALLERGIES = [
    ("ペニシリン系抗菌薬", "medication", "蕁麻疹"),
    ("ヨード造影剤", "medication", "呼吸困難"),
    ("卵", "food", "発疹"),
]
ACP_WISHES = [
    ["心肺蘇生を希望しない（DNAR）", "自宅での看取りを希望"],
    ["心肺蘇生を希望しない（DNAR）", "状態悪化時は入院を希望"],
    ["救急搬送は希望する", "人工呼吸器は希望しない"],
]
RELATIONS = [("長女", "DAU"), ("長男", "SON"), ("妻", "WIFE"), ("夫", "HUSB"), ("次女", "DAU")]
CARE_LEVELS = ["要介護1", "要介護2", "要介護3", "要介護4", "要介護5"]
NOTES = [
    "訪問時、食事摂取量は半分程度。水分摂取を促した。",
    "夜間の咳嗽あり。家族へ経過観察を依頼。",
    "下肢浮腫が昨日より増悪。主治医へ報告予定。",
    "服薬カレンダーの飲み忘れなし。",
    "仙骨部の褥瘡、発赤は改善傾向。",
]


def _ref(kind: str, key: str) -> dict[str, str]:
    return {"reference": f"urn:uuid:{kind}-{key}"}


def _vital(
    code: str, display: str, value: float, unit: str, ucum: str, when: datetime, subject: str
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBS_CAT, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "subject": {"reference": subject},
        "effectiveDateTime": when.isoformat(timespec="seconds"),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": ucum},
    }


def _bp(sys_: int, dia: int, when: datetime, subject: str) -> dict[str, Any]:
    def comp(code: str, name: str, v: int) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code, "display": name}]},
            "valueQuantity": {"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        }

    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBS_CAT, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "血圧"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": when.isoformat(timespec="seconds"),
        "component": [comp("8480-6", "収縮期血圧", sys_), comp("8462-4", "拡張期血圧", dia)],
    }


def patient_entries(
    rng: random.Random,
    key: str,
    patient: dict[str, Any],
    *,
    clinic: str,
    team: list[str],
    now: datetime,
) -> list[dict[str, Any]]:
    """Transaction entries for one patient; ``clinic`` and ``team`` are Organization refs."""
    subject = f"urn:uuid:patient-{key}"
    out: list[dict[str, Any]] = []

    def post(resource: dict[str, Any], full: str | None = None) -> None:
        entry: dict[str, Any] = {
            "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]},
        }
        if full:
            entry["fullUrl"] = full
        out.append(entry)

    for icd, name, meds in rng.sample(PROBLEMS, k=rng.randint(1, 3)):
        onset = now - timedelta(days=rng.randint(200, 3000))
        post(
            {
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
                "code": {"coding": [{"system": ICD10, "code": icd, "display": name}], "text": name},
                "subject": {"reference": subject},
                "onsetDateTime": onset.date().isoformat(),
            }
        )
        for med, how in meds:
            post(
                {
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": {"text": med},
                    "subject": {"reference": subject},
                    "requester": {"reference": clinic},
                    "dosageInstruction": [{"text": how}],
                }
            )
    if rng.random() < 0.3:
        what, category, reaction = rng.choice(ALLERGIES)
        post(
            {
                "resourceType": "AllergyIntolerance",
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                            "code": "active",
                        }
                    ]
                },
                "category": [category],
                "criticality": "high" if category == "medication" else "low",
                "code": {"text": what},
                "patient": {"reference": subject},
                "reaction": [{"manifestation": [{"text": reaction}]}],
            }
        )
    for day in range(3):
        when = now - timedelta(days=day, hours=rng.randint(1, 6))
        post(_vital("8310-5", "体温", round(rng.uniform(36.0, 37.6), 1), "℃", "Cel", when, subject))
        post(_bp(rng.randint(100, 150), rng.randint(55, 90), when, subject))
        post(_vital("2708-6", "SpO2", rng.randint(92, 99), "%", "%", when, subject))
        post(_vital("8867-4", "脈拍", rng.randint(58, 96), "/min", "/min", when, subject))
    post(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [
                    {"system": RENKEI_CODESYSTEM, "code": "care-level", "display": "要介護度"}
                ]
            },
            "subject": {"reference": subject},
            "effectiveDateTime": (now - timedelta(days=90)).date().isoformat(),
            "valueCodeableConcept": {"text": rng.choice(CARE_LEVELS)},
        }
    )
    if rng.random() < 0.6:
        post(
            {
                "resourceType": "Consent",
                "status": "active",
                "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "adr"}]},
                "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
                "patient": {"reference": subject},
                "dateTime": (now - timedelta(days=rng.randint(10, 200))).isoformat(
                    timespec="seconds"
                ),
                "policyRule": {"text": "人生会議（ACP）での本人の意思"},
                "provision": {"code": [{"text": w} for w in rng.choice(ACP_WISHES)]},
            }
        )
    relation, code = rng.choice(RELATIONS)
    post(
        {
            "resourceType": "RelatedPerson",
            "active": True,
            "patient": {"reference": subject},
            "relationship": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                            "code": code,
                        }
                    ],
                    "text": relation,
                }
            ],
            "name": [{"text": f"{patient['name'][0]['family']} {relation}"}],
            "telecom": [
                {
                    "system": "phone",
                    "value": f"090-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
                    "rank": 1,
                }
            ],
        }
    )
    team_url = f"urn:uuid:careteam-{key}"
    post(
        {
            "resourceType": "CareTeam",
            "status": "active",
            "name": "在宅ケアチーム",
            "subject": {"reference": subject},
            "participant": [{"member": {"reference": org}} for org in [clinic, *team]],
        },
        team_url,
    )
    post(
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": {"reference": subject},
            "dateTime": (now - timedelta(days=100)).isoformat(timespec="seconds"),
            "performer": [{"reference": subject}],
            "organization": [{"reference": clinic}],
            "policyRule": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
                ]
            },
            "provision": {
                "type": "permit",
                "period": {"start": (now - timedelta(days=100)).date().isoformat()},
                "actor": [
                    {
                        "role": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                    "code": "IRCP",
                                }
                            ]
                        },
                        "reference": {"reference": team_url},
                    }
                ],
            },
        }
    )
    for i in range(2):
        post(
            {
                "resourceType": "Communication",
                "status": "completed",
                "subject": {"reference": subject},
                "sender": {"reference": team[0] if team else clinic},
                "sent": (now - timedelta(hours=6 + 20 * i)).isoformat(timespec="seconds"),
                "payload": [{"contentString": rng.choice(NOTES)}],
            }
        )
    return out
