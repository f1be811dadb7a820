"""The export for the trial database: the study's blinded trial events as CDISC ODM 1.3.2 and CSV
for the investigator and the monitor, counts matching the records, the same shape for both arms,
and the unblinded variant only for the statistician after the study unblinding."""
from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from cellbench import clock, studies, study_data, trial_export, users
from cellbench.clock import utcnow
from cellbench.demo.manufacturing import DEMO_PASSWORD
from cellbench.errors import InvalidInput
from cellbench.models import (
    Administration,
    AuditEvent,
    CustodyEvent,
    Kit,
    Participant,
    Unblinding,
    Visit,
)
from cellbench.models.base import utc_text
from cellbench.trial_export.local_times import SiteTimes

from . import trial_export_reference as reference
from .conftest import PASSWORD, sign_in
from .trialworld import STUDY, administer, enrol

ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
DISPENSED_ON = ("dispensed", "in_preparation", "administering", "administered", "not_administered", "incomplete")
STOPPED = ("not_administered", "incomplete")


def _parse(content: bytes) -> ET.Element:
    return ET.fromstring(content)


def _odm_counts(root: ET.Element) -> dict:
    clinical = root.find(f"{ODM}ClinicalData")
    subjects = clinical.findall(f"{ODM}SubjectData")
    treatments = [e for s in subjects for e in s.findall(f"{ODM}StudyEventData") if e.get("StudyEventOID") == "SE.TRT"]
    groups = [g for e in treatments for g in e.iter(f"{ODM}ItemGroupData")]
    return {"participants": len(subjects),
            "dispensings": sum(1 for g in groups if g.get("ItemGroupOID") == "IG.DISP"),
            "administrations": Counter(g.get("ItemGroupRepeatKey") for g in groups
                                       if g.get("ItemGroupOID") == "IG.ADM"),
            "not_administered": sum(1 for g in groups if g.get("ItemGroupOID") == "IG.NADM"),
            "unblindings": sum(1 for s in subjects for e in s.findall(f"{ODM}StudyEventData")
                               if e.get("StudyEventOID") == "SE.UNBL")}


def _record_counts(session, study, sites) -> dict:
    """The same figures counted from the tables, independently of the export's reading."""
    people = select(Participant.id).where(Participant.study_id == study.id, Participant.site_id.in_(sites),
                                          Participant.randomisation_number.is_not(None))
    visits = list(session.scalars(select(Visit).where(Visit.participant_id.in_(people))))
    given = Counter(str(dose) for dose in session.scalars(
        select(Administration.dose).where(Administration.visit_id.in_([v.id for v in visits]))))
    per_visit = Counter(session.scalars(select(Administration.visit_id).where(
        Administration.visit_id.in_([v.id for v in visits]))))
    return {"participants": session.scalar(select(func.count()).select_from(people.subquery())),
            "dispensings": sum(1 for v in visits if v.state in DISPENSED_ON),
            "administrations": given,
            "not_administered": sum(study.doses_per_treatment - per_visit[v.id] for v in visits if v.state in STOPPED),
            "unblindings": session.scalar(select(func.count()).where(Unblinding.participant_id.in_(people)))}


@pytest.mark.parametrize("study_code", ["NCT07290946", "NCT06805448"])
def test_the_odm_export_is_well_formed_and_its_counts_match_the_records(demo_trial_world, app, study_code):
    db = demo_trial_world
    client = sign_in(app, "investigator", DEMO_PASSWORD)
    response = client.get(f"/trial-export/{study_code}.xml")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert "attachment" in response.headers["content-disposition"]
    root = _parse(response.content)
    assert root.tag == f"{ODM}ODM"
    assert (root.get("ODMVersion"), root.get("FileType")) == ("1.3.2", "Snapshot")
    assert root.get("FileOID") and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", root.get("CreationDateTime"))
    study_el = root.find(f"{ODM}Study")
    assert study_el.find(f"{ODM}GlobalVariables/{ODM}StudyName").text == study_code
    mdv = study_el.find(f"{ODM}MetaDataVersion")
    defined = {el.get("OID") for el in mdv}
    used = {el.get(attr) for el in root.find(f"{ODM}ClinicalData").iter()
            for attr in ("StudyEventOID", "FormOID", "ItemGroupOID", "ItemOID") if el.get(attr)}
    assert used <= defined, "every event, form, group and item used is defined in the MetaDataVersion"
    assert root.find(f"{ODM}ClinicalData").get("MetaDataVersionOID") == mdv.get("OID")

    with db.read() as s:
        study = studies.by_code(s, study_code)
        actor = users.actor(s, users.by_username(s, "investigator"))
        expected = _record_counts(s, study, sorted(actor.sites))
    found = _odm_counts(root)
    assert found == expected
    assert found["participants"] > 0 and found["administrations"]
    if study_code == "NCT07290946":
        assert found["not_administered"] > 0, "the demo's stopped treatment"
    else:
        assert found["unblindings"] > 0, "the demo's emergency unblinding"
    with db.read() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "trial data exported")
                          .order_by(AuditEvent.seq.desc())).first()
    assert (event.entity_id, event.user_name) == (study_code, "Ida Krogh") and event.field.startswith("blinded ")


def test_the_csv_export_has_the_same_events_and_writes_no_formula(demo_trial_world, app):
    client = sign_in(app, "monitor", DEMO_PASSWORD)
    odm = _odm_counts(_parse(client.get("/trial-export/NCT07290946.xml").content))
    response = client.get("/trial-export/NCT07290946.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    events = Counter(r["event"] for r in rows)
    assert events["randomised"] == odm["participants"] and events["dispensed"] == odm["dispensings"]
    assert events["administered"] == sum(odm["administrations"].values())
    assert events["not administered"] == odm["not_administered"]
    assert "arm" not in rows[0]
    assert not [cell for r in rows for cell in r.values() if cell[:1] in ("=", "+", "-", "@")]


@pytest.fixture
def two_arms(db, trial_world):
    """One participant of each arm, each dispensed a kit of their arm and injected in both glands,
    then unblinded in an emergency, all at the same moments (setup written directly)."""
    active, placebo = trial_world.participant("active"), trial_world.participant("placebo")
    kit_of = {active: trial_world.first_active[0], placebo: trial_world.first_placebo[0]}
    moment = utcnow().replace(microsecond=0) - timedelta(hours=2)
    for screening, (number, kit) in enumerate(kit_of.items(), 1):
        enrol(db, number, f"SCR-{screening}")
        administer(db, number, kit)
    with db.write() as s:
        ida = users.by_username(s, "ida")
        for p in s.scalars(select(Participant).where(Participant.randomisation_number.in_(list(kit_of)))):
            p.randomised_at = moment
            kit = s.scalars(select(Kit).where(Kit.number == kit_of[p.randomisation_number])).one()
            s.add(CustodyEvent(kit_id=kit.id, action="dispensed", by_user=ida.id, by_name=ida.full_name,
                               at=moment + timedelta(minutes=5), to_place="RH-ENT: with the preparer"))
            s.add(Unblinding(participant_id=p.id, reason_code="sae", reason="suspected reaction", by_user=ida.id,
                             at=moment + timedelta(hours=1)))
            for row in s.scalars(select(Administration).where(Administration.kit_id == kit.id)):
                row.administered_at = moment + timedelta(minutes=30 + row.dose)
    return trial_world, kit_of


def test_the_blinded_export_has_the_same_shape_for_both_arms_and_names_no_arm(db, two_arms, as_):
    _world, kit_of = two_arms
    for username in ("ida", "mette"):
        odm = as_(username).get(f"/trial-export/{STUDY}.xml")
        assert odm.status_code == 200, odm.text
        text = odm.content.decode()
        for leak in ("active", "placebo", "Active", "Placebo", "ASC-", "PLB-", "saline", "IT.ARM", "IT.KITARM"):
            assert leak not in text, leak
        subjects = {s.get("SubjectKey"): s for s in _parse(odm.content).iter(f"{ODM}SubjectData")}
        assert set(subjects) == set(kit_of)

        def shape(number: str, subjects=subjects) -> str:
            """A participant's events with their own numbers blanked: all that may differ."""
            written = ET.tostring(subjects[number], encoding="unicode").rstrip()  # the last one ends the list
            return written.replace(number, "<participant>").replace(kit_of[number], "<kit>")

        first, second = sorted(kit_of)
        assert shape(first) == shape(second)
        assert "SE.UNBL" in shape(first) and "IG.ADM" in shape(first)

    rows = list(csv.reader(io.StringIO(as_("ida").get(f"/trial-export/{STUDY}.csv").text)))
    by_participant = {n: [[c.replace(n, "<p>").replace(kit_of[n], "<k>") for c in r] for r in rows if r[2] == n]
                      for n in kit_of}
    first, second = sorted(kit_of)
    assert by_participant[first] == by_participant[second]


@pytest.mark.parametrize("who", ["frida", "sara", "stella", "adam"])
def test_only_the_investigator_and_the_monitor_download_the_blinded_export(db, two_arms, as_, who):
    assert as_(who).get(f"/trial-export/{STUDY}.xml").status_code == 403
    assert f"/trial-export/{STUDY}.xml" in as_("ida").get(f"/studies/{STUDY}").text, "linked from the study page"
    if who != "adam":
        assert f"/trial-export/{STUDY}.xml" not in as_(who).get(f"/studies/{STUDY}").text
    with db.read() as s:
        assert not list(s.scalars(select(AuditEvent).where(AuditEvent.action == "trial data exported")))


def test_an_unknown_format_is_refused_by_name_and_nothing_is_recorded(db, two_arms):
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        trial_export.blinded_export(s, users.actor(s, users.by_username(s, "ida")), STUDY, "xlsx")
    assert refused.value.field == "format"
    with db.read() as s:
        assert not list(s.scalars(select(AuditEvent).where(AuditEvent.action == "trial data exported")))


def test_the_unblinded_variant_waits_for_the_study_unblinding_and_is_the_statisticians(db, two_arms, as_):
    world, kit_of = two_arms
    stella = as_("stella")
    before = stella.get(f"/study-data/{STUDY}/trial-events.xml")
    assert before.status_code == 403 and "is open" in before.text
    with db.write() as s:
        study_data.lock(s, users.by_username(s, "sara"), studies.by_code(s, STUDY), PASSWORD)
    assert stella.get(f"/api/v1/study-data/{STUDY}/trial-events.xml").status_code == 403, "locked, not unblinded"
    with db.write() as s:
        study_data.unblind(s, users.by_username(s, "sara"), studies.by_code(s, STUDY), PASSWORD, "analysis plan")
    for blinded in ("ida", "mette"):
        assert as_(blinded).get(f"/study-data/{STUDY}/trial-events.xml").status_code == 403

    odm = stella.get(f"/study-data/{STUDY}/trial-events.xml")
    assert odm.status_code == 200, odm.text
    root = _parse(odm.content)
    arms = {s.get("SubjectKey"): s.find(f".//{ODM}ItemData[@ItemOID='IT.ARM']").get("Value")
            for s in root.iter(f"{ODM}SubjectData")}
    assert arms == {n: world.arms[n] for n in kit_of}
    kit_arms = {s.find(f".//{ODM}ItemData[@ItemOID='IT.KITNO']").get("Value"):
                s.find(f".//{ODM}ItemData[@ItemOID='IT.KITARM']").get("Value") for s in root.iter(f"{ODM}SubjectData")}
    assert kit_arms == {kit_of[n]: world.arms[n] for n in kit_of}
    rows = list(csv.DictReader(io.StringIO(stella.get(f"/api/v1/study-data/{STUDY}/trial-events.csv").text)))
    assert {(r["randomisation_number"], r["arm"]) for r in rows} == {(n, world.arms[n]) for n in kit_of}
    with db.read() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.user_name == "Stella Statistician")
                                               .order_by(AuditEvent.seq))]
    assert actions.count("sealed read") == 2 and actions.count("trial data exported") == 2


def test_free_text_that_xml_cannot_hold_still_gives_a_file_that_parses(db, two_arms):
    with db.read() as s:
        events = trial_export.gather(s, studies.by_code(s, STUDY))
    events.subjects[0].visits[0].administered[0].by_name = 'Dr <Ida> & "Co"\x01'
    root = _parse(trial_export.odm_xml(events, created_at=utcnow()))
    names = [i.get("Value") for i in root.iter(f"{ODM}ItemData") if i.get("ItemOID") == "IT.ADMBY"]
    assert 'Dr <Ida> & "Co"\ufffd' in names


@pytest.mark.parametrize("page", [1, 2, 1000])
def test_the_streamed_export_is_byte_for_byte_the_file_written_whole(demo_trial_world, page):
    """Streamed a page of participants at a time, the file is what the whole ElementTree wrote
    (trial_export_reference), with awkward text included, for both formats and both variants."""
    db = demo_trial_world
    now = utcnow()
    with db.read() as s:
        study = studies.by_code(s, "NCT07290946")
        events = trial_export.gather(s, study)
        events.subjects[0].visits[0].administered[0].by_name = 'Dr <Ida> & "Co"\t\x01'
        arms = ({events.subjects[0].randomisation_number: "active"}, {})
        for variant in (None, arms):
            pieces = list(trial_export.odm_chunks(study, events.sites, [events.subjects[i:i + page]
                                                                        for i in range(0, len(events.subjects), page)],
                                                  created_at=now, arms=variant))
            assert len(pieces) > 2, "the subjects leave in pieces"
            assert b"".join(pieces) == reference.odm_xml(events, created_at=now, arms=variant)
        streamed = trial_export.streamed(s, study, "csv", now=now)
        assert b"".join(streamed.chunks).decode() == reference.csv_text(trial_export.gather(s, study))


def _awkward(events: trial_export.TrialEvents) -> None:
    """Values a spreadsheet would run or XML would refuse, in every kind of cell that holds text."""
    first = events.subjects[0]
    first.randomisation_number, first.site_code = "=R-1", '-SI,"TE'
    visit = next(v for s in events.subjects for v in s.visits if v.kit_number and v.administered)
    visit.kit_number = "+K-1"
    visit.administered[0].gland, visit.administered[0].volume_ml = "@gland", -1.5
    visit.administered[0].by_name = 'Dr <Ida> & "Co"\t\x01'
    visit.not_administered = [trial_export.Dose(2, 'right, "lower"', not_administered_at=utcnow(),
                                                reason="\r=cmd|' /C calc'")]
    first.unblindings = [trial_export.UnblindingEvent(utcnow(), "-reason\n2"),
                         trial_export.UnblindingEvent(utc_text(utcnow()), 'said "no", then yes')]


def test_the_csv_and_odm_writers_give_the_old_writers_bytes_with_awkward_values(demo_trial_world):
    """The fast writers against the old ones (trial_export_reference) with formula-like text, a
    negative volume, control characters and a reason over two lines, in both variants."""
    db = demo_trial_world
    now = utcnow()
    with db.read() as s:
        events = trial_export.gather(s, studies.by_code(s, "NCT07290946"))
    _awkward(events)
    arms = ({events.subjects[0].randomisation_number: "=active"},
            {v.kit_number: 'placebo, "saline"' for s in events.subjects for v in s.visits if v.kit_number})
    for variant in (None, arms):
        assert trial_export.csv_text(events, variant) == reference.csv_text(events, variant)
        assert trial_export.odm_xml(events, created_at=now, arms=variant) == reference.odm_xml(
            events, created_at=now, arms=variant)
    assert "'=R-1" in trial_export.csv_text(events) and "'-1.5" in trial_export.csv_text(events)
    assert '"\'-SI,""TE"' in trial_export.csv_text(events), "a cell with a comma or a quote is quoted as csv quotes it"


@pytest.mark.parametrize("zone", ["Europe/Copenhagen", "America/St_Johns", "Asia/Kathmandu", "Australia/Lord_Howe",
                                  "UTC", "America/Sao_Paulo"])
def test_times_written_from_the_stored_text_are_the_datetimes_own_across_offset_changes(zone):
    """Each UTC hour converted once (local_times) gives, to the second, what converting each time
    gave: around the switches to and from summer time, and in zones whose offsets have minutes."""
    where = ZoneInfo(zone)
    times = SiteTimes(where)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(minutes=37 * n, seconds=n % 60, microseconds=n * 7919 % 1000000)
               for n in range(0, 365 * 24 * 60 // 37, 3)]
    moments += [datetime(2026, month, day, hour, minute, 59, 999999, tzinfo=UTC) for month in (3, 4, 9, 10, 11)
                for day in range(1, 32, 3) for hour in range(24) for minute in (0, 29, 30, 59) if day <= 28]
    for moment in moments:
        local = moment.astimezone(where)
        assert times.odm(utc_text(moment)) == local.isoformat(timespec="seconds") == times.odm(moment)
        assert times.csv(utc_text(moment)) == clock.local_text(moment, where) == times.csv(moment)


def test_a_site_roles_streamed_files_are_the_old_writers_on_its_own_participants(demo_trial_world):
    """Read a page at a time by a site role (its sites only), the files equal the old writers' on
    the same participants gathered at once."""
    db = demo_trial_world
    now = utcnow()
    with db.read() as s:
        study = studies.by_code(s, "NCT07290946")
        actor = users.actor(s, users.by_username(s, "investigator"))
        whole = trial_export.gather(s, study, reader=actor)
        assert whole.subjects
        for fmt, expected in (("odm", reference.odm_xml(whole, created_at=now)),
                              ("csv", reference.csv_text(whole).encode())):
            pages = trial_export.subject_pages(s, study, actor, size=2)
            if fmt == "odm":
                chunks = trial_export.odm_chunks(study, whole.sites, pages, created_at=now)
            else:
                chunks = trial_export.csv_chunks(study, pages)
            assert b"".join(chunks) == expected


def test_a_study_with_no_one_randomised_gives_an_empty_clinical_data_as_before(demo_trial_world):
    db = demo_trial_world
    now = utcnow()
    with db.read() as s:
        events = trial_export.gather(s, studies.by_code(s, "NCT07290946"))
    events.subjects, events.sites = [], []
    assert trial_export.odm_xml(events, created_at=now) == reference.odm_xml(events, created_at=now)
    assert b"<ClinicalData" in trial_export.odm_xml(events, created_at=now)


def test_the_audited_counts_are_those_of_the_file_read_page_by_page(demo_trial_world):
    db = demo_trial_world
    with db.read() as s:
        study = studies.by_code(s, "NCT07290946")
        actor = users.actor(s, users.by_username(s, "investigator"))
        counted = trial_export.events.counts(s, study, actor)
        pages = list(trial_export.subject_pages(s, study, actor, size=1))
        whole = trial_export.gather(s, study, reader=actor)
    assert len(pages) == counted["participants"] > 1
    assert [subject for page in pages for subject in page] == whole.subjects
    assert counted == whole.counts
