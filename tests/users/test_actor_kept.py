"""An actor is read once per transaction and kept (issue 18), yet a change to the person's roles or
links made in that same transaction is seen by the very next call, and a rolled-back change is
forgotten with the transaction."""
from __future__ import annotations

from sqlalchemy import select

from cellbench import users
from cellbench.models import Role, Site


def test_a_role_given_in_the_same_transaction_is_in_the_next_actor(db, people):
    with db.write() as s:
        olivia = users.by_username(s, "olivia")
        assert users.actor(s, olivia).roles == frozenset({Role.operator})
        assert users.actor(s, olivia) is users.actor(s, olivia), "kept within the transaction"
        admin = users.actor(s, users.by_username(s, "adam"))
        users.set_roles(s, admin, olivia, ["operator", "verifier"], "covers verification this month")
        assert users.actor(s, olivia).roles == frozenset({Role.operator, Role.verifier})
        users.set_roles(s, admin, olivia, ["operator"], "back to operator only")
        assert users.actor(s, olivia).roles == frozenset({Role.operator})


def test_a_site_linked_in_the_same_transaction_is_in_the_next_actor(trial_world, db):
    with db.write() as s:
        frida = users.by_username(s, "frida")
        before = users.actor(s, frida).sites
        other = s.scalars(select(Site).where(Site.code == "AUH-ENT")).one()
        assert before is not None and other.id not in before
        users.link(s, users.cli_actor(), frida, site="AUH-ENT")
        assert users.actor(s, frida).sites == before | {other.id}
        users.unlink(s, users.cli_actor(), frida, site="AUH-ENT", reason="linked by mistake")
        assert users.actor(s, frida).sites == before


def test_a_renamed_person_acts_under_the_new_name_at_once(db, people):
    with db.write() as s:
        oscar = users.by_username(s, "oscar")
        assert users.actor(s, oscar).name == "Oscar Operator"
        oscar.full_name = "Oscar Operatør"
        assert users.actor(s, oscar).name == "Oscar Operatør"


def test_a_rolled_back_role_change_is_forgotten_with_its_transaction(db, people):
    with db.write() as s:
        victor = users.by_username(s, "victor")
        admin = users.actor(s, users.by_username(s, "adam"))
        with s.begin_nested() as savepoint:
            users.set_roles(s, admin, victor, ["verifier", "operator"], "trial of a second role")
            assert Role.operator in users.actor(s, victor).roles
            savepoint.rollback()
        assert users.actor(s, victor).roles == frozenset({Role.verifier})
