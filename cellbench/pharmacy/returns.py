"""Returns: a kit in the site's stock, or assigned or dispensed but not yet prepared, comes back
to the pharmacy with its condition; a visit it was assigned to waits for another kit."""
from __future__ import annotations

from sqlmodel import Session

from .. import audit, custody, kits, limits, users
from ..audit import Actor
from ..custody import fetch
from ..errors import InvalidInput
from ..models import Kit, KitState, Site
from .lifecycle import VisitState, set_state
from .records import detach_kit, lock, scan_kit, visit_of_kit


def return_kit(session: Session, actor: Actor, code: str | None, secret_key: str, condition: str | None, *,
               manual: object = False, reason: str | None = None) -> Kit:
    """A kit in the site's stock, or assigned or dispensed but not prepared, comes back to the
    pharmacy with its condition. A visit it was assigned to waits for another kit. Its number may
    be typed by hand (marked, with the reason): the custody event and the audit trail say so."""
    users.require_role(actor, *kits.MOVES["return"].roles)
    kit, entry = scan_kit(session, code, secret_key, manual=manual, reason=reason)
    users.require_scope(actor, kit.site_id, kit.study_id, field="code")
    condition = limits.text(condition, "condition", "condition", "condition")
    if not condition:
        raise InvalidInput("Describe the kit's condition as it comes back (e.g. intact, seal broken).",
                           field="condition")
    if KitState(kit.state) not in kits.MOVES["return"].sources:
        raise InvalidInput(f"Kit {kit.number} is {kits.state_label(kit.state).lower()}: only a kit in stock, "
                           "assigned or dispensed but not yet prepared can be returned.", field="code")
    visit = visit_of_kit(session, kit)
    if visit is not None:
        ctx = lock(session, visit, None)
        detach_kit(ctx.visit)
        session.flush()
        audit.record(session, actor, "kit returned", "visit", ctx.ref, field="kit", old=kit.number, new=None,
                     reason=condition)
        set_state(session, actor, ctx, VisitState.planned, reason=f"kit {kit.number} returned")
    kits.move(session, actor, kit, "return", reason=condition if not entry.typed else f"{condition}; {entry.method}")
    site = fetch(session, Site, kit.site_id, "site") if kit.site_id else None
    to_place = f"{site.code if site else kit.location}: pharmacy returns"
    custody.record(session, actor, kit, "returned", from_place=kit.location, to_place=to_place,
                   condition=condition if not entry.typed else f"{condition}; {entry.method}")
    custody.relocate(session, actor, kit, to_place)
    return kit


