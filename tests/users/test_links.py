"""Adam administers who works where: the users page and the API show each site-role user's sites and
studies, and link or unlink them (a reason to unlink), each change audited. The global roles have
no links to change; nobody but the administrator changes them."""
from __future__ import annotations

from sqlalchemy import select

from cellbench import users
from cellbench.models import AuditEvent

OTHER = "AUH-ENT"


def link_events(db, username):
    with db.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.entity_id == username,
                                                       AuditEvent.field.in_(["sites", "studies"]))
                              .order_by(AuditEvent.seq)))


def test_the_users_page_shows_each_site_users_sites_and_studies_and_all_for_the_global_roles(trial_world, as_):
    page = as_("adam").get("/admin/users")
    assert page.status_code == 200
    frida_row = next(row for row in page.text.split("<tr") if "/admin/users/frida" in row)
    assert "RH-ENT" in frida_row and "NCT07290946" in frida_row
    sara_row = next(row for row in page.text.split("<tr") if "/admin/users/sara" in row)
    assert sara_row.count("<td>all</td>") == 2
    detail = as_("adam").get("/admin/users/frida")
    assert "Sites and studies" in detail.text and 'value="RH-ENT"' in detail.text
    assert f"<option>{OTHER}</option>" in detail.text, "the other site is offered to link"
    assert "not tied to sites" in as_("adam").get("/admin/users/sara").text


def test_the_administrator_links_and_unlinks_a_site_on_the_page_each_audited(trial_world, as_, db):
    adam = as_("adam")
    done = adam.submit("/admin/users/frida/link", {"site": OTHER, "study": ""})
    assert done.status_code == 303, done.text
    with db.read() as s:
        assert users.links_of(s, users.by_username(s, "frida").id)[0] == [OTHER, "RH-ENT"]
    refused = adam.submit("/admin/users/frida/unlink", {"site": OTHER, "reason": " "})
    assert refused.status_code == 422 and "A reason is required" in refused.text
    done = adam.submit("/admin/users/frida/unlink", {"site": OTHER, "reason": "covered for a week only"})
    assert done.status_code == 303
    with db.read() as s:
        assert users.links_of(s, users.by_username(s, "frida").id)[0] == ["RH-ENT"]
    linked, unlinked = link_events(db, "frida")[-2:]
    assert (linked.action, linked.user_name, linked.new_value) == ("site linked", "Adam Admin",
                                                                   f'["{OTHER}", "RH-ENT"]')
    assert (unlinked.action, unlinked.old_value, unlinked.new_value, unlinked.reason) == (
        "site unlinked", f'["{OTHER}", "RH-ENT"]', '["RH-ENT"]', "covered for a week only")


def test_linking_a_global_role_or_nothing_is_refused_on_the_page_naming_the_field(trial_world, as_, db):
    before = len(link_events(db, "sara"))
    refused = as_("adam").submit("/admin/users/sara/link", {"site": OTHER})
    assert refused.status_code == 422 and "holds no site role" in refused.text
    nothing = as_("adam").submit("/admin/users/frida/link", {"site": "", "study": ""})
    assert nothing.status_code == 422 and "Choose a site or a study." in nothing.text
    assert len(link_events(db, "sara")) == before


def test_nobody_but_the_administrator_changes_the_links(trial_world, as_, db):
    before = len(link_events(db, "ida"))
    for who in ("frida", "anna", "mette"):
        assert as_(who).submit("/admin/users/ida/link", {"site": OTHER}).status_code == 403
        assert as_(who).post("/api/v1/users/ida/link", json={"site": OTHER}).status_code == 403
    assert len(link_events(db, "ida")) == before


def test_the_api_shows_links_and_links_and_unlinks_with_a_reason(trial_world, as_, db):
    adam = as_("adam")
    ida = adam.get("/api/v1/users/ida").json()
    assert ida["sites"] == ["RH-ENT"] and "NCT07290946" in ida["studies"]
    assert adam.get("/api/v1/users/sara").json()["sites"] is None, "supply works for every site"
    linked = adam.post("/api/v1/users/ida/link", json={"site": OTHER})
    assert linked.status_code == 200 and linked.json()["sites"] == [OTHER, "RH-ENT"]
    refused = adam.post("/api/v1/users/ida/unlink", json={"site": OTHER})
    assert refused.status_code == 422 and refused.json()["field"] == "reason"
    unlinked = adam.post("/api/v1/users/ida/unlink", json={"site": OTHER, "reason": "left the AUH team"})
    assert unlinked.status_code == 200 and unlinked.json()["sites"] == ["RH-ENT"]
    assert [e.action for e in link_events(db, "ida")][-2:] == ["site linked", "site unlinked"]
    global_role = adam.post("/api/v1/users/peter/link", json={"study": "NCT07290946"})
    assert global_role.status_code == 422 and global_role.json()["field"] == "study"
    assert as_("ida").get("/api/v1/me").json()["sites"] == ["RH-ENT"], "each user sees their own links"


def test_a_link_change_reads_the_same_whatever_arm_a_users_kits_are(trial_world, as_):
    """Blinded-safe: the administrator's pages name sites and studies only, never a kit or an arm."""
    as_("adam").submit("/admin/users/frida/link", {"site": OTHER})
    page = as_("adam").get("/admin/users/frida").text.lower()
    assert "placebo" not in page and "active" not in page.replace("deactivat", "").replace("reactivat", "")


def test_the_demo_has_a_statistician_who_works_for_no_site(demo_world):
    from cellbench.demo import DEMO_USERS

    assert ("statistician", "Stine Holt") in {(username, name) for username, name, _roles in DEMO_USERS}
    with demo_world.read() as s:
        stine = users.by_username(s, "statistician")
        assert {r.value for r in users.roles_of(s, stine.id)} == {"statistician"}
        assert users.links_of(s, stine.id) == ([], []), "an unblinded role, global: no site links"
