"""Who lists which message, read from the message's own row (who queued it, its site, study and
audience) instead of the reader's audit trail: the same messages as the rule that read the trail,
for every person of a built world and every state, page by page; the author back-filled by the
migration from the trail; and a site reader's page that reads no audit event at all."""
from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import and_, event, or_, select
from sqlmodel import Session, col

from cellbench import notifications, pagination, users
from cellbench.audit import Actor
from cellbench.db import Database, alembic_config, migrate
from cellbench.errors import DomainError
from cellbench.models import AuditEvent, Kit, KitState, Lot, Notification, Role, Site, User
from cellbench.notifications.queue import OWN_KINDS
from cellbench.supply import quarantine

from ..conftest import actor_of
from ..test_unblinding import EMAIL
from ..trialworld import enrol
from .support import give_emails
from .test_blind import shape
from .test_pages_and_messages import unblind

LISTERS = {*notifications.READERS_IN_FULL, *notifications.SITE_READERS}
SECRET = "a test's cursor secret"


def listed_before(session: Session, actor: Actor, state: str) -> list[int]:
    """The rule as it was: a site person's own messages found by her "notification queued" events."""
    query = select(col(Notification.id)).order_by(col(Notification.id).desc())
    if state != "all":
        query = query.where(col(Notification.state) == state)
    if not notifications.reads_in_full(actor):
        own = [int(i) for i in session.scalars(
            select(col(AuditEvent.entity_id)).where(col(AuditEvent.action) == "notification queued",
                                                   col(AuditEvent.entity_type) == "notification",
                                                   col(AuditEvent.user_id) == actor.user_id)) if i.isdigit()]
        mine = and_(col(Notification.id).in_(own), col(Notification.kind).in_(OWN_KINDS))
        blinded = and_(col(Notification.audience) == notifications.BLINDED,
                       col(Notification.site_id).in_(sorted(actor.sites or ())),
                       col(Notification.study_id).in_(sorted(actor.studies or ())))
        query = query.where(or_(mine, blinded) if actor.sites is not None else mine)
    return list(session.scalars(query))


def authors_by_trail(session: Session) -> dict[int, int | None]:
    return {int(entity): user for entity, user in session.execute(
        select(AuditEvent.entity_id, AuditEvent.user_id).where(AuditEvent.action == "notification queued",
                                                               AuditEvent.entity_type == "notification"))}


def listed_now(session: Session, actor: Actor, state: str, size: int) -> list[int]:
    """Every page of the list, `size` messages at a time, following the cursors."""
    ids: list[int] = []
    after = None
    while True:
        found = notifications.message_page(session, actor, pagination.Ask(after, SECRET, size), state=state)
        ids += [n.id for n in found.rows if n.id is not None]
        if found.next is None:
            return ids
        after = found.next


def everyone(db: Database) -> list[Actor]:
    with db.read() as s:
        return [users.actor(s, u) for u in s.scalars(select(User).order_by(col(User.id)))]


def test_every_person_of_a_built_world_lists_the_messages_the_audit_trail_rule_listed(db, demo_trial_world):
    with db.read() as s:
        assert authors_by_trail(s) == dict(s.execute(select(Notification.id, Notification.queued_by)).all()), \
            "every message names who queued it (none: the command line)"
    compared = set()
    for actor in everyone(db):
        with db.read() as s:
            for state in notifications.STATES:
                if not actor.roles & LISTERS:
                    with pytest.raises(DomainError):
                        notifications.message_page(s, actor, pagination.Ask(None, SECRET), state=state)
                    continue
                before = listed_before(s, actor, state)
                assert listed_now(s, actor, state, 2) == before == listed_now(s, actor, state, 1000), \
                    f"{sorted(r.value for r in actor.roles)} {actor.name}, {state}"
                compared.add((frozenset(actor.roles), bool(before)))
    assert {(frozenset({r}), True) for r in notifications.SITE_READERS} <= compared, \
        "each site role has messages to compare"


def test_the_investigator_who_unblinded_lists_the_sponsors_message_and_no_other_investigator_does(
        db, trial_world, as_):
    give_emails(db)
    participant = trial_world.participant("active")
    enrol(db, participant, "S-001")
    unblind(as_, participant)
    with db.read() as s:
        [full] = s.scalars(select(Notification).where(Notification.audience == "unblinded",
                                                      Notification.kind == "emergency_unblinding"))
        assert full.recipients.startswith(EMAIL), "the sponsor's emergency contact"
        ida = actor_of(db, "ida")
        assert full.queued_by == ida.user_id
        other = Actor(user_id=actor_of(db, "mette").user_id, name="another investigator",
                      roles=frozenset({Role.investigator}), sites=ida.sites, studies=ida.studies)
        for state in notifications.STATES:
            assert listed_now(s, ida, state, 1) == listed_before(s, ida, state)
            assert listed_now(s, other, state, 1) == listed_before(s, other, state)
        assert full.id in listed_now(s, ida, "all", 1), "her own unblinding's message, listed without its text"
        assert full.id not in listed_now(s, other, "all", 1), "not someone else's"
        assert not notifications.may_read_text(ida, full)


def test_the_upgrade_names_each_messages_author_from_the_audit_trail(db, demo_trial_world):
    with db.read() as s:
        authors = dict(s.execute(select(Notification.id, Notification.queued_by)).all())
    assert authors == authors_by_trail(s) and any(authors.values())
    below = ScriptDirectory.from_config(alembic_config()).get_revision("0034_notify").down_revision
    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, str(below))
    migrate(db)
    with db.read() as s:
        assert dict(s.execute(select(Notification.id, Notification.queued_by)).all()) == authors


def test_a_site_readers_page_reads_no_audit_event_and_a_bounded_number_of_rows(db, demo_trial_world):
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        for actor in everyone(db):
            if actor.roles & set(notifications.SITE_READERS):
                with db.read() as s:
                    notifications.message_page(s, actor, pagination.Ask(None, SECRET, 2), state="all")
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    listing = [q for q in statements if "FROM notification" in q]
    assert listing and not [q for q in listing if "audit_event" in q]
    assert all(q.count("LIMIT") >= 2 for q in listing), "every branch is limited, and the page"


def test_a_quarantine_of_an_active_or_a_placebo_lot_adds_the_same_lines_to_each_site_readers_list(db, kit_world):
    give_emails(db)
    with db.write() as s:
        site = s.scalars(select(Site).where(Site.code == "RH-ENT")).one()
        for kit in s.scalars(select(Kit).where(col(Kit.blinded_lot_id).is_not(None))):
            kit.state, kit.site_id, kit.location = KitState.at_site, site.id, site.name
    readers = {name: actor_of(db, name) for name in ("frida", "ida", "mette")}
    seen = {}
    for arm, lot in (("active", kit_world.asc_lot), ("placebo", kit_world.placebo_lot)):
        with Session(db.engine, expire_on_commit=False) as s:  # each quarantine rolled back: the same start
            quarantine.open_manual(s, actor_of(db, "sara"), s.scalars(select(Lot).where(Lot.number == lot)).one(),
                                   "proportionate", "complaint under review")
            seen[arm] = {name: shape(notifications.message_page(s, actor, pagination.Ask(None, SECRET)).rows,
                                     kit_world.active + kit_world.placebo) for name, actor in readers.items()}
            s.expunge_all()
            s.rollback()
    assert seen["active"] == seen["placebo"]
    assert [row[0] for row in seen["active"]["frida"]] == ["kit_quarantine"], "the site is told, in blinded words"
