"""The trial events as CDISC ODM 1.3.2 (a Snapshot file) for import into the sponsor's EDC.

The Study carries its GlobalVariables and one MetaDataVersion defining exactly the study events,
forms, item groups and items used below; ClinicalData holds one SubjectData per randomised
participant (SubjectKey: the randomisation number; SiteRef: a Location of AdminData):

- SE.RAND, once: the randomisation number, date and time;
- SE.TRT, repeated per treatment (StudyEventRepeatKey: the treatment number): F.DISP, the kit
  dispensed and when; F.ADM, one IG.ADM per gland administered (ItemGroupRepeatKey: the dose
  number) with gland, volume and time; F.NADM, one IG.NADM per gland not administered;
- SE.UNBL, repeated per emergency unblinding: when, and the coded reason (never the arm).

The unblinded variant adds IT.ARM (the participant's arm) to IG.RAND and IT.KITARM (the kit's) to
IG.DISP, and nothing else. Written with ElementTree, which escapes text and attributes; characters
XML 1.0 cannot hold at all (control characters typed into a reason) are replaced, so the file
always parses.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from .events import Dose, Subject, TreatmentVisit, TrialEvents

NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
MDV = "MDV.1"
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# item OID -> (name, ODM data type, length or None, what it is)
ITEMS: dict[str, tuple[str, str, int | None, str]] = {
    "IT.RANDNO": ("RANDNO", "text", 32, "Randomisation number"),
    "IT.RANDDAT": ("RANDDAT", "date", None, "Date of randomisation (site date)"),
    "IT.RANDDTC": ("RANDDTC", "datetime", None, "Time of randomisation (site time with offset)"),
    "IT.SITE": ("SITEID", "text", 32, "Site code"),
    "IT.ARM": ("ARM", "text", 16, "Arm of the participant (unblinded export only)"),
    "IT.KITNO": ("KITNO", "text", 16, "Kit number dispensed"),
    "IT.DISPDTC": ("DISPDTC", "datetime", None, "Time the kit was dispensed (pharmacist's scan)"),
    "IT.KITARM": ("KITARM", "text", 16, "Arm of the kit (unblinded export only)"),
    "IT.GLAND": ("GLAND", "text", 64, "Gland (dose site)"),
    "IT.VOLUME": ("VOLML", "float", None, "Volume injected (mL)"),
    "IT.ADMDTC": ("ADMDTC", "datetime", None, "Time of administration"),
    "IT.ADMBY": ("ADMBY", "text", 200, "Administered by"),
    "IT.NADTC": ("NADTC", "datetime", None, "Time the dose was recorded not administered"),
    "IT.NAREAS": ("NAREAS", "text", 200, "Why the dose was not administered"),
    "IT.UNBDTC": ("UNBDTC", "datetime", None, "Time of the emergency unblinding"),
    "IT.UNBREAS": ("UNBREAS", "text", 32, "Coded reason for the emergency unblinding"),
}
# item group OID -> (name, repeating, item OIDs in order); the unblinded items are left out of blinded files
GROUPS: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "IG.RAND": ("Randomisation", False, ("IT.RANDNO", "IT.RANDDAT", "IT.RANDDTC", "IT.SITE", "IT.ARM")),
    "IG.DISP": ("Kit dispensed", False, ("IT.KITNO", "IT.DISPDTC", "IT.KITARM")),
    "IG.ADM": ("Administration per gland", True, ("IT.GLAND", "IT.VOLUME", "IT.ADMDTC", "IT.ADMBY")),
    "IG.NADM": ("Dose not administered", True, ("IT.GLAND", "IT.NADTC", "IT.NAREAS")),
    "IG.UNBL": ("Emergency unblinding", False, ("IT.UNBDTC", "IT.UNBREAS")),
}
FORMS = {"F.RAND": ("Randomisation", "IG.RAND"), "F.DISP": ("Dispensing", "IG.DISP"),
         "F.ADM": ("Administration", "IG.ADM"), "F.NADM": ("Not administered", "IG.NADM"),
         "F.UNBL": ("Emergency unblinding", "IG.UNBL")}
EVENTS = {"SE.RAND": ("Randomisation", False, "Scheduled", ("F.RAND",)),
          "SE.TRT": ("Treatment", True, "Scheduled", ("F.DISP", "F.ADM", "F.NADM")),
          "SE.UNBL": ("Emergency unblinding", True, "Unscheduled", ("F.UNBL",))}
UNBLINDED_ITEMS = frozenset({"IT.ARM", "IT.KITARM"})
Arms = tuple[dict[str, str], dict[str, str]]  # participant number -> arm, kit number -> arm


def _tag(name: str) -> str:
    """Elements are written unqualified under the root's default namespace declaration (ElementTree's
    default_namespace option refuses unqualified attributes, and ODM's attributes are unqualified)."""
    return name


def _el(parent: ET.Element, name: str, **attrs: object) -> ET.Element:
    return ET.SubElement(parent, _tag(name), {k: _clean(v) for k, v in attrs.items() if v is not None})


def _clean(value: object) -> str:
    return NOT_XML.sub("\ufffd", str(value))


def _moment(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).isoformat(timespec="seconds") if value else None


def _metadata(study: ET.Element, events: TrialEvents, unblinded: bool) -> None:
    used = [oid for oid in ITEMS if unblinded or oid not in UNBLINDED_ITEMS]
    glob = _el(study, "GlobalVariables")
    for name, text in (("StudyName", events.study.code), ("StudyDescription", events.study.title),
                       ("ProtocolName", f"{events.study.code} (EU CT {events.study.eu_ct_number})")):
        _el(glob, name).text = _clean(text)
    mdv = _el(study, "MetaDataVersion", OID=MDV, Name="cellbench trial events",
              Description="Randomisation, dispensing, administration per gland, not administered, unblinding")
    protocol = _el(mdv, "Protocol")
    for number, oid in enumerate(EVENTS, 1):
        _el(protocol, "StudyEventRef", StudyEventOID=oid, OrderNumber=number, Mandatory="No")
    for oid, (name, repeating, kind, forms) in EVENTS.items():
        event_def = _el(mdv, "StudyEventDef", OID=oid, Name=name, Repeating="Yes" if repeating else "No", Type=kind)
        for number, form in enumerate(forms, 1):
            _el(event_def, "FormRef", FormOID=form, OrderNumber=number, Mandatory="No")
    for oid, (name, group_oid) in FORMS.items():
        _el(_el(mdv, "FormDef", OID=oid, Name=name, Repeating="No"), "ItemGroupRef", ItemGroupOID=group_oid,
            Mandatory="No")
    for oid, (name, repeating, items) in GROUPS.items():
        group_def = _el(mdv, "ItemGroupDef", OID=oid, Name=name, Repeating="Yes" if repeating else "No")
        for number, item_oid in enumerate((i for i in items if i in used), 1):
            _el(group_def, "ItemRef", ItemOID=item_oid, OrderNumber=number, Mandatory="No")
    for oid in used:
        name, kind, length, what = ITEMS[oid]
        item_def = _el(mdv, "ItemDef", OID=oid, Name=name, DataType=kind, Length=length)
        translated = ET.SubElement(_el(item_def, "Description"), _tag("TranslatedText"), {XML_LANG: "en"})
        translated.text = _clean(what)


def _items(parent: ET.Element, group: str, values: Mapping[str, object], repeat: int | None = None) -> None:
    """One ItemGroupData with an ItemData for each value given (an empty value is left out)."""
    node = _el(parent, "ItemGroupData", ItemGroupOID=group, ItemGroupRepeatKey=repeat)
    for oid, value in values.items():
        if value is not None and value != "":
            _el(node, "ItemData", ItemOID=oid, Value=f"{value:g}" if isinstance(value, float) else value)


def _form(event: ET.Element, form: str) -> ET.Element:
    return _el(event, "FormData", FormOID=form)


def _treatment(subject_el: ET.Element, subject: Subject, visit: TreatmentVisit, arms: Arms | None) -> None:
    if not (visit.kit_number or visit.administered or visit.not_administered):
        return  # a visit still planned or with a kit only assigned: nothing happened yet
    zone = subject.zone
    event = _el(subject_el, "StudyEventData", StudyEventOID="SE.TRT", StudyEventRepeatKey=visit.treatment)
    if visit.kit_number:
        values: dict[str, object] = {"IT.KITNO": visit.kit_number, "IT.DISPDTC": _moment(visit.dispensed_at, zone)}
        if arms is not None:
            values["IT.KITARM"] = arms[1].get(visit.kit_number)
        _items(_form(event, "F.DISP"), "IG.DISP", values)
    if visit.administered:
        form = _form(event, "F.ADM")
        for dose in visit.administered:
            _items(form, "IG.ADM", {"IT.GLAND": dose.gland, "IT.VOLUME": dose.volume_ml,
                                    "IT.ADMDTC": _moment(dose.administered_at, zone), "IT.ADMBY": dose.by_name},
                   repeat=dose.number)
    if visit.not_administered:
        form = _form(event, "F.NADM")
        for dose in visit.not_administered:
            _not_given(form, dose, zone)


def _not_given(form: ET.Element, dose: Dose, zone: ZoneInfo) -> None:
    _items(form, "IG.NADM", {"IT.GLAND": dose.gland, "IT.NADTC": _moment(dose.not_administered_at, zone),
                             "IT.NAREAS": dose.reason}, repeat=dose.number)


def odm_xml(events: TrialEvents, *, created_at: datetime, arms: Arms | None = None) -> bytes:
    """The ODM document; `arms` (the unblinded variant) adds the participant's and the kit's arm."""
    study_oid = f"ST.{events.study.code}"
    variant = "unblinded" if arms is not None else "blinded"
    root = ET.Element(_tag("ODM"), {
        "xmlns": NS, "ODMVersion": "1.3.2", "FileType": "Snapshot", "Granularity": "All",
        "FileOID": _clean(f"cellbench.{events.study.code}.{variant}.{created_at.strftime('%Y%m%dT%H%M%S%fZ')}"),
        "CreationDateTime": created_at.isoformat(timespec="seconds"),
        "Originator": "cellbench", "SourceSystem": "cellbench"})
    _metadata(_el(root, "Study", OID=study_oid), events, arms is not None)
    admin = _el(root, "AdminData", StudyOID=study_oid)
    for site in events.sites:
        location = _el(admin, "Location", OID=f"LOC.{site.code}", Name=site.name, LocationType="Site")
        _el(location, "MetaDataVersionRef", StudyOID=study_oid, MetaDataVersionOID=MDV,
            EffectiveDate=events.study.loaded_at.date().isoformat())
    clinical = _el(root, "ClinicalData", StudyOID=study_oid, MetaDataVersionOID=MDV)
    for subject in events.subjects:
        node = _el(clinical, "SubjectData", SubjectKey=subject.randomisation_number)
        _el(node, "SiteRef", LocationOID=f"LOC.{subject.site_code}")
        rand = {"IT.RANDNO": subject.randomisation_number,
                "IT.RANDDAT": subject.randomised_at.astimezone(subject.zone).date().isoformat()
                if subject.randomised_at else None,
                "IT.RANDDTC": _moment(subject.randomised_at, subject.zone), "IT.SITE": subject.site_code}
        if arms is not None:
            rand["IT.ARM"] = arms[0].get(subject.randomisation_number)
        _items(_form(_el(node, "StudyEventData", StudyEventOID="SE.RAND"), "F.RAND"), "IG.RAND", rand)
        for visit in subject.visits:
            _treatment(node, subject, visit, arms)
        for number, unblinding in enumerate(subject.unblindings, 1):
            event = _el(node, "StudyEventData", StudyEventOID="SE.UNBL", StudyEventRepeatKey=number)
            _items(_form(event, "F.UNBL"), "IG.UNBL", {"IT.UNBDTC": _moment(unblinding.at, subject.zone),
                                                       "IT.UNBREAS": unblinding.reason_code})
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
