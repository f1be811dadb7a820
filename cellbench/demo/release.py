"""The release demo: QC results, QA's reviews, QP certification and sponsor release of new lots,
made through the service functions after the manufacturing demo (demo.manufacturing)."""
from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from .. import clock, qc, release, users
from ..models import Lot
from ..specifications import QUALITATIVE, ReleaseTest
from .manufacturing import DEMO_PASSWORD, FEW_VIALS, asc_lot, eligible_donation, placebo_lot


def passing_value(test: ReleaseTest) -> str:
    """A result inside the test's acceptance criterion: the middle of a range, or the passing word."""
    c = test.acceptance
    if c.kind != "range":
        return QUALITATIVE[c.kind][0]
    if c.min is not None and c.max is not None:
        return f"{(c.min + c.max) / 2:g}"
    if c.min is not None:
        return f"{c.min + 5:g}"
    assert c.max is not None, f"range criterion of {test.code} has neither bound"  # the spec loader refuses that
    return f"{c.max / 2:g}"


def demo_results(session: Session, lot: Lot, *, skip: frozenset[str] = frozenset(),
                  values: dict[str, str] | None = None) -> None:
    """The demo QC analyst enters a result for every required test (passing unless given), QA reviews it."""
    analyst, reviewer = users.by_username(session, "qc"), users.by_username(session, "qa")
    analyst_actor = users.actor(session, analyst)
    for status in qc.test_status(session, lot):
        code = status.test.code
        if not release.counts_for_release(status.test) or code in skip or status.state != qc.MISSING:
            continue
        value = (values or {}).get(code) or passing_value(status.test)
        result = qc.enter_result(session, analyst_actor, lot, code, value)
        qc.review_result(session, reviewer, DEMO_PASSWORD, result)


def certify_with_sterility_pending(session: Session, lot: Lot) -> None:
    """Every result but sterility in, QA's reviews, and the QP's initial certification listing it."""
    qa, qp = users.by_username(session, "qa"), users.by_username(session, "qp")
    demo_results(session, lot, skip=frozenset({"sterility"}))
    for kind in release.REVIEW_KINDS:
        release.sign_review(session, qa, DEMO_PASSWORD, lot, kind)
    release.certify(session, qp, DEMO_PASSWORD, lot, final=False,
                    pending=[("sterility", "qc", clock.today() + timedelta(days=14))],
                    comment="Sterility incubation (14 days) still running; cryopreserved product held at the site "
                            "until final.")


def certify_finally(session: Session, lot: Lot) -> None:
    """The pending results in, QA's reviews again, the QP's final certification (after a release
    for shipment, it releases the lot and its kits wherever they are)."""
    qa, qp = users.by_username(session, "qa"), users.by_username(session, "qp")
    demo_results(session, lot)
    for kind in release.REVIEW_KINDS:
        release.sign_review(session, qa, DEMO_PASSWORD, lot, kind)
    release.certify(session, qp, DEMO_PASSWORD, lot, final=True)


def seed_release_demo(session: Session) -> dict[str, list[str]]:
    """Release demo data (issue 4), made through the service functions after demo.seed_records():
    two released ASC lots, an ASC lot blocked by an out-of-specification endotoxin result, an ASC lot
    with an initial certification and its sterility result pending, and two released saline lots.
    New lots are started for all of them, so the demo's first lots stay where they were.
    Returns the lot numbers by situation."""
    pw = DEMO_PASSWORD
    qa, qp, supply = (users.by_username(session, n) for n in ("qa", "qp", "supply"))
    op_actor = users.actor(session, users.by_username(session, "operator"))
    asc = [asc_lot(session, eligible_donation(session, op_actor, qa, n), until=None) for n in (4, 5, 6, 7)]
    # the second fills the kits of seed_kits; no kit draws from the first, which fills fewer vials
    saline = [placebo_lot(session, "NACL-26A02", FEW_VIALS), placebo_lot(session, "NACL-26A03")]
    for lot in (asc[0], asc[1], *saline):
        demo_results(session, lot)
        for kind in release.REVIEW_KINDS:
            release.sign_review(session, qa, pw, lot, kind)
        release.certify(session, qp, pw, lot, final=True)
        release.sponsor_release(session, supply, pw, lot)
    blocked, staged = asc[2], asc[3]
    endotoxin_limit = next(t for t in qc.spec_of(session, blocked).tests if t.code == "endotoxin").acceptance.max
    if endotoxin_limit is None:  # the shipped specification has one; without it there is no OOS to show
        raise RuntimeError("demo: the ASC specification names no endotoxin limit")
    demo_results(session, blocked, values={"endotoxin": f"{endotoxin_limit * 2:g}"})  # OOS: investigation opened
    for kind in release.REVIEW_KINDS:
        release.sign_review(session, qa, pw, blocked, kind)
    certify_with_sterility_pending(session, staged)
    session.flush()
    return {"released_asc": [asc[0].number, asc[1].number], "blocked_by_oos": [blocked.number],
            "initial_certified": [staged.number], "released_saline": [s.number for s in saline]}
