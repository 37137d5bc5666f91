"""Element types JSON does not show: choice elements (``value[x]``) and instants.

A choice element appears in JSON under its name plus the type (``valueQuantity``,
``onsetDateTime``). The evaluator must recognise those keys, but a guess by suffix alone
would read ``Coverage.subscriberId`` as a ``subscriber[x]`` of type ``id``. The table comes
from the ``fhir.resources`` R4B models and is shipped as ``data/choice-elements.json``
(regenerate with ``python -m renkei.fhir.search.choices``): importing every model at run
time would cost ~2 s.

Instants are exact points (``AuditEvent.recorded``), indexed as ``low = high``; a
``dateTime`` written the same way covers its whole last written unit. JSON cannot tell them
apart, so ``data/instant-elements.json`` lists each resource's top-level instant elements.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

_FILE = "choice-elements.json"
_INSTANTS = "instant-elements.json"


@cache
def choice_suffixes() -> dict[str, frozenset[str]]:
    """``{"value": {"Quantity", "DateTime", ...}, "onset": {...}, ...}``."""
    raw = json.loads(resources.files("renkei.fhir.data").joinpath(_FILE).read_text())
    return {name: frozenset(suffixes) for name, suffixes in raw.items()}


@cache
def instant_elements() -> frozenset[str]:
    """``{"AuditEvent.recorded", "Observation.issued", ...}``."""
    raw = json.loads(resources.files("renkei.fhir.data").joinpath(_INSTANTS).read_text())
    return frozenset(f"{res_type}.{name}" for res_type, names in raw.items() for name in names)


def _generate_instants() -> dict[str, list[str]]:
    from fhir.resources.R4B import get_fhir_model_class

    from renkei.fhir.validate import supported_types

    out: dict[str, list[str]] = {}
    for res_type in sorted(supported_types()):
        fields = get_fhir_model_class(res_type).model_fields
        names = sorted(
            (f.alias or name) for name, f in fields.items() if "Instant()" in str(f.annotation)
        )
        if names:
            out[res_type] = names
    return out


def _generate() -> dict[str, list[str]]:
    import importlib
    import pkgutil

    import fhir.resources.R4B as r4b

    out: dict[str, set[str]] = {}
    for info in pkgutil.iter_modules(r4b.__path__):
        if info.name.startswith(("fhirtypes", "tests")):
            continue
        module = importlib.import_module(f"fhir.resources.R4B.{info.name}")
        for obj in vars(module).values():
            fields = getattr(obj, "model_fields", None)
            if not isinstance(fields, dict):
                continue
            for name, field in fields.items():
                extra = getattr(field, "json_schema_extra", None)
                if isinstance(extra, dict) and extra.get("one_of_many"):
                    base = str(extra["one_of_many"])
                    key = field.alias or name
                    if key.startswith(base) and len(key) > len(base):
                        out.setdefault(base, set()).add(key[len(base) :])
    return {name: sorted(suffixes) for name, suffixes in sorted(out.items())}


def main() -> None:
    data = Path(__file__).resolve().parent.parent / "data"
    for name, content in ((_FILE, _generate()), (_INSTANTS, _generate_instants())):
        (data / name).write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")
        print(f"wrote {data / name}")


if __name__ == "__main__":
    main()
