"""Study pages: the particulars every site reads in the protocol, the study's blinded lots, and the
public key that checks label QR codes. Arms appear by name and ratio only, as the protocol states
them: never which kit or participant is on which."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session

from .. import kits, qrpayload, studies, trial_export
from ..deps import Viewer, read_session, require
from ..templating import render

router = APIRouter(prefix="/studies", include_in_schema=False)
READERS = studies.READERS
readers = require(*READERS)


blinded_lot_rows = kits.blinded_lot_rows


@router.get("")
def study_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    rows = [(study, studies.definition(study), sum(kits.counts_by_state(session, study=study).values()))
            for study in studies.all_studies(session)]
    return render(request, "studies/list.html", rows=rows)


@router.get("/{code}")
def study_page(request: Request, code: str, viewer: Viewer = Depends(readers),
               session: Session = Depends(read_session)):
    study = studies.by_code(session, code, field="code")
    return render(request, "studies/detail.html", study=study, d=studies.definition(study),
                  sites=studies.sites_of(session, study), blinded_lots=blinded_lot_rows(session, study),
                  public_key=qrpayload.public_key_text(request.app.state.settings.secret_key),
                  can_read_kits=viewer.has(*kits.READERS), can_export_trial=viewer.has(*trial_export.EXPORTERS))
