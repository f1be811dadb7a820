"""Study pages: the particulars every site reads in the protocol, the study's blinded lots, and the
public key that checks label QR codes. Arms appear by name and ratio only, as the protocol states
them: never which kit or participant is on which."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session

from .. import kits, qrpayload, studies, trial_export
from ..deps import Viewer, read_session, require
from ..templating import render
from . import paging

router = APIRouter(prefix="/studies", include_in_schema=False)
READERS = studies.READERS
readers = require(*READERS)


@router.get("")
def study_list(request: Request, viewer: Viewer = Depends(readers), session: Session = Depends(read_session)):
    rows = [(study, studies.definition(study), sum(kits.counts_by_state(session, study=study).values()))
            for study in studies.all_studies(session)]
    return render(request, "studies/list.html", rows=rows)


@router.get("/{code}")
def study_page(request: Request, code: str, viewer: Viewer = Depends(readers),
               session: Session = Depends(read_session)):
    study = studies.by_code(session, code, field="code")
    # a page of the blinded lots, newest first, with the study's totals over all of them
    lots = kits.blinded_lot_page(session, paging.ask(request), study)
    return render(request, "studies/detail.html", study=study, d=studies.definition(study),
                  sites=studies.sites_of(session, study), blinded_lots=lots.page.rows, lots=lots,
                  pager=paging.pager(f"/studies/{quote(study.code, safe='')}", {}, lots.page),
                  state_label=kits.state_label,
                  public_key=qrpayload.public_key_text(request.app.state.settings.secret_key),
                  can_read_kits=viewer.has(*kits.READERS), can_export_trial=viewer.has(*trial_export.EXPORTERS))
