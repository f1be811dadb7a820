"""Boxes and positions in a site's tanks: adding a box and printing its label, a box's positions,
and moving a kit (or putting away one received without a position) by scanning the kit, then the
box. The receipt in one pass is on the shipment page (web/shipments.py).

Pharmacists and monitors read these pages: a box lists kit numbers in the positions the scans put
them in, the same for both arms; nothing here reaches the sealed compartment.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlmodel import Session

from .. import audit, custody, labels
from ..db import Database
from ..deps import Viewer, form_by, form_data, get_db, read_session
from ..models import StorageLocation
from ..templating import render
from .shipments import RECEIVERS, _storage_act, readers

router = APIRouter(include_in_schema=False)



def box_url(code: str) -> str:
    return f"/storage/boxes/{quote(code, safe='')}"


@router.post("/storage/boxes")
def add_box(request: Request, viewer: Viewer = Depends(form_by(*custody.KEEPERS)),
            db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in ("location", "rack", "capacity")}

    def work(session: Session) -> str:
        box = custody.add_box(session, viewer.actor, location_code=values["location"], rack=values["rack"],
                              capacity=values["capacity"])
        return f"Box {box.code} added: print its label and put it on the box."

    return _storage_act(request, db, viewer, work, values, "box")


@router.post("/storage/moves")
def move_kit(request: Request, viewer: Viewer = Depends(form_by(*RECEIVERS)),
             db: Database = Depends(get_db), form=Depends(form_data)):
    values = {k: form.get(k, "") for k in ("code", "target", "position")}
    secret = request.app.state.settings.secret_key

    def work(session: Session) -> str:
        kit, where = custody.move_by_scan(session, viewer.actor, values["code"], values["target"], secret,
                                          typed_position=values["position"])
        return f"Kit {kit.number} is in {where.text}."

    return _storage_act(request, db, viewer, work, values, "move")


@router.get("/storage/boxes/{code}")
def box_page(request: Request, code: str, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    box = custody.box_by_code(session, code, field="code", reader=viewer.actor)
    taken = custody.occupants(session, box)
    return render(request, "shipments/box.html", box=box, where=custody.positions.position(session, box, 1),
                  taken=taken, box_url=box_url(box.code),
                  history=audit.history(session, viewer.actor, "storage_location",
                                        custody.fetch(session, StorageLocation, box.storage_location_id,
                                                      "storage location").code))


@router.get("/storage/boxes/{code}/label.pdf")
def box_label(request: Request, code: str, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    box = custody.box_by_code(session, code, field="code", reader=viewer.actor)
    where = custody.positions.position(session, box, 1)
    pdf = labels.render_box_labels_pdf([labels.BoxLabel(box.code, (where.site, where.tank,
                                                                   f"rack {box.rack} · {box.capacity} positions"))],
                                       creation_date=box.created_at)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{box.code}.pdf"'})
