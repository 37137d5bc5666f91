"""The sections of the patient summary, after the International Patient Summary (IPS)
and Japan's electronic-record sharing content (3文書6情報: 傷病名, アレルギー, 感染症,
薬剤禁忌, 検査, 処方).

Each section is data: what to search for, how many entries, which roles may see it. The
search runs as the caller, so the access policy decides entry by entry what is included.
"""

from __future__ import annotations

from dataclasses import dataclass

from renkei.fhir.capability import RENKEI_CODESYSTEM

LOINC = "http://loinc.org"
#: advance directives are Consents with scope ``adr``; sharing consents use ``patient-privacy``
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"


@dataclass(frozen=True)
class SectionSpec:
    key: str
    title_ja: str
    title_en: str
    #: section code (LOINC, as the IPS uses)
    loinc: str
    #: one or more searches; ``{patient}`` is replaced by the patient's id
    searches: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    #: roles that may see the section (None: everyone who may see the patient)
    roles: frozenset[str] | None = None
    #: look this many days back first; only when nothing is that recent, take the latest
    #: ever (a year of daily vitals is 1,600 rows to sort for ten)
    recent_days: int | None = None


CLINICIANS = frozenset({"doctor", "nurse", "pharmacist", "coordinator", "admin"})

SECTIONS: tuple[SectionSpec, ...] = (
    SectionSpec(
        "problems",
        "傷病名・感染症",
        "Active problems and infections",
        "11450-4",
        (("Condition", (("patient", "{patient}"), ("clinical-status", "active"))),),
    ),
    SectionSpec(
        "allergies",
        "アレルギー・薬剤禁忌",
        "Allergies and contraindications",
        "48765-2",
        (("AllergyIntolerance", (("patient", "{patient}"),)),),
    ),
    SectionSpec(
        "medications",
        "処方・服薬",
        "Current medications",
        "10160-0",
        (
            ("MedicationRequest", (("patient", "{patient}"), ("status", "active"))),
            ("MedicationStatement", (("patient", "{patient}"), ("status", "active"))),
        ),
    ),
    SectionSpec(
        "vitals",
        "バイタルサイン",
        "Recent vital signs",
        "8716-3",
        (
            (
                "Observation",
                (
                    ("patient", "{patient}"),
                    ("category", "vital-signs"),
                    ("_sort", "-date"),
                    ("_count", "10"),
                ),
            ),
        ),
        recent_days=90,
    ),
    SectionSpec(
        "results",
        "検査結果",
        "Recent laboratory results",
        "30954-2",
        (
            (
                "Observation",
                (
                    ("patient", "{patient}"),
                    ("category", "laboratory"),
                    ("_sort", "-date"),
                    ("_count", "10"),
                ),
            ),
        ),
        roles=CLINICIANS,
        recent_days=90,
    ),
    SectionSpec(
        "function",
        "要介護度・ADL",
        "Care level and activities of daily living",
        "47420-5",
        (
            (
                "Observation",
                (
                    ("patient", "{patient}"),
                    ("code", f"{RENKEI_CODESYSTEM}|care-level,{RENKEI_CODESYSTEM}|adl"),
                    ("_sort", "-date"),
                    ("_count", "4"),
                ),
            ),
        ),
    ),
    SectionSpec(
        "advance-care-planning",
        "人生会議（ACP）",
        "Advance care planning: resuscitation, transfer, place of death",
        "42348-3",
        (("Consent", (("patient", "{patient}"), ("scope", f"{CONSENT_SCOPE}|adr"))),),
    ),
    SectionSpec(
        "contacts",
        "緊急連絡先",
        "Emergency contacts",
        "56864-2",
        (("RelatedPerson", (("patient", "{patient}"), ("active", "true"))),),
    ),
    SectionSpec(
        "care-team",
        "ケアチーム",
        "Care team",
        "85847-2",
        (
            (
                "CareTeam",
                (
                    ("patient", "{patient}"),
                    ("status", "active"),
                    ("_include", "CareTeam:participant"),
                ),
            ),
        ),
    ),
    SectionSpec(
        "status-updates",
        "最近の経過",
        "Recent status updates",
        "8648-8",
        (
            (
                "Communication",
                (("patient", "{patient}"), ("_sort", "-sent"), ("_count", "5")),
            ),
        ),
    ),
)
