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
IG.DISP, and nothing else. The document's head is written with ElementTree, which escapes text and
attributes; its ClinicalData as text exactly as ElementTree would write it (odm_clinical). Characters
XML 1.0 cannot hold at all (control characters typed into a reason) are replaced, so the file
always parses.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

from ..models import Site, Study
from .events import Subject, TrialEvents
from .odm_clinical import NOT_XML, Arms, ClinicalWriter

NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
MDV = "MDV.1"

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


def _metadata(element: ET.Element, study: Study, unblinded: bool) -> None:
    used = [oid for oid in ITEMS if unblinded or oid not in UNBLINDED_ITEMS]
    glob = _el(element, "GlobalVariables")
    for name, text in (("StudyName", study.code), ("StudyDescription", study.title),
                       ("ProtocolName", f"{study.code} (EU CT {study.eu_ct_number})")):
        _el(glob, name).text = _clean(text)
    mdv = _el(element, "MetaDataVersion", OID=MDV, Name="cellbench trial events",
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


_MARK = "SUBJECTS"  # an empty element standing where the subjects go in the document's head


def _head(study: Study, sites: list[Site], created_at: datetime, arms: Arms | None, empty: bool) -> tuple[bytes, bytes]:
    """The document around its subjects: metadata and sites before, the closing tags after."""
    study_oid = f"ST.{study.code}"
    variant = "unblinded" if arms is not None else "blinded"
    root = ET.Element(_tag("ODM"), {
        "xmlns": NS, "ODMVersion": "1.3.2", "FileType": "Snapshot", "Granularity": "All",
        "FileOID": _clean(f"cellbench.{study.code}.{variant}.{created_at.strftime('%Y%m%dT%H%M%S%fZ')}"),
        "CreationDateTime": created_at.isoformat(timespec="seconds"),
        "Originator": "cellbench", "SourceSystem": "cellbench"})
    _metadata(_el(root, "Study", OID=study_oid), study, arms is not None)
    admin = _el(root, "AdminData", StudyOID=study_oid)
    for site in sites:
        location = _el(admin, "Location", OID=f"LOC.{site.code}", Name=site.name, LocationType="Site")
        _el(location, "MetaDataVersionRef", StudyOID=study_oid, MetaDataVersionOID=MDV,
            EffectiveDate=study.loaded_at.date().isoformat())
    clinical = _el(root, "ClinicalData", StudyOID=study_oid, MetaDataVersionOID=MDV)
    if not empty:
        ET.SubElement(clinical, _MARK)
    ET.indent(root)
    whole = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    if empty:
        return whole, b""
    before, after = whole.split(f"<{_MARK} />".encode())
    return before.rstrip(b" "), after  # the subjects' text brings its own indentation


def odm_chunks(study: Study, sites: list[Site], pages: Iterable[list[Subject]], *, created_at: datetime,
               arms: Arms | None = None) -> Iterator[bytes]:
    """The ODM document in pieces, one per page of subjects; `arms` (the unblinded variant) adds the
    participant's and the kit's arm."""
    pages = iter(pages)
    first = next(pages, [])
    before, after = _head(study, sites, created_at, arms, empty=not first)
    yield before
    if not first:
        return
    clinical = ClinicalWriter(arms)
    yield clinical.page(first)
    for page in pages:
        if page:
            yield b"\n" + clinical.page(page)
    yield after


def odm_xml(events: TrialEvents, *, created_at: datetime, arms: Arms | None = None) -> bytes:
    """The whole ODM document at once."""
    return b"".join(odm_chunks(events.study, events.sites, [events.subjects], created_at=created_at, arms=arms))
