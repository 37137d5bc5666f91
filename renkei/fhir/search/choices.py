"""Which element names are FHIR choice elements (``value[x]``), and their JSON suffixes.

A choice element appears in JSON under its name plus the type (``valueQuantity``,
``onsetDateTime``). The evaluator must recognise those keys, but a guess by suffix alone
would read ``Coverage.subscriberId`` as a ``subscriber[x]`` of type ``id``. The table comes
from the ``fhir.resources`` R4B models and is shipped as ``data/choice-elements.json``
(regenerate with ``python -m renkei.fhir.search.choices``): importing every model at run
time would cost ~2 s.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

_FILE = "choice-elements.json"


@cache
def choice_suffixes() -> dict[str, frozenset[str]]:
    """``{"value": {"Quantity", "DateTime", ...}, "onset": {...}, ...}``."""
    raw = json.loads(resources.files("renkei.fhir.data").joinpath(_FILE).read_text())
    return {name: frozenset(suffixes) for name, suffixes in raw.items()}


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
    target = Path(__file__).resolve().parent.parent / "data" / _FILE
    target.write_text(json.dumps(_generate(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
