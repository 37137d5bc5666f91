"""``/summary/{patient_id}``: the patient summary as a printable Japanese HTML page.

For ambulance crews and printouts: the same document as ``Patient/[id]/$summary``, with
print CSS (A4). The caller must be allowed to see the patient, as for the FHIR operation.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from renkei.api.deps import request_context
from renkei.api.fhir import _run, principal_of, render
from renkei.fhir.context import FhirRequest
from renkei.summary.display import when_text

router = APIRouter(tags=["summary"])


@cache
def _template() -> jinja2.Template:
    text = resources.files("renkei.summary").joinpath("templates/summary.html").read_text()
    return jinja2.Environment(autoescape=True).from_string(text)


@router.get(
    "/summary/{patient_id}",
    response_class=HTMLResponse,
    summary="Printable patient summary (患者サマリー)",
)
async def summary_page(patient_id: str, request: Request) -> Response:
    ctx = request_context(request, await principal_of(request))
    freq = FhirRequest("GET", f"Patient/{patient_id}/$summary", context=ctx)
    resp = await run_in_threadpool(_run, request.app.state.services, freq)
    if resp.status != 200 or resp.body is None:
        return render(resp)
    composition = resp.body["entry"][0]["resource"]
    sections = [
        {
            "key": s["code"]["coding"][0]["code"],
            "title": s["title"],
            "title_en": s["code"]["coding"][0].get("display", ""),
            "div": s["text"]["div"],
        }
        for s in composition["section"]
    ]
    html = _template().render(
        title=composition["title"], created=when_text(composition["date"]), sections=sections
    )
    return HTMLResponse(html)
