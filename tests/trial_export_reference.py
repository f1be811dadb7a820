"""The writers as they were before they were made fast, kept as the references the export's files
must equal byte for byte: the ODM document built as a whole ElementTree and written by ET.indent
and ET.tostring (the metadata part is still built this way, so it is shared), and the CSV rows
built per event with every value through spreadsheet.cell."""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime

from cellbench import clock, spreadsheet
from cellbench.models.base import parse_utc_text
from cellbench.trial_export import COLUMNS, UNBLINDED_COLUMNS, TrialEvents
from cellbench.trial_export.odm import MDV, NS, Arms, _clean, _el, _metadata, _moment


def dated(events: TrialEvents) -> TrialEvents:
    """The events with their times as datetimes, as these writers read them (the export now keeps
    each time as the UTC text it is stored as, and writes it from there)."""
    def at(value):
        return parse_utc_text(value) if isinstance(value, str) else value

    replace = dataclasses.replace
    return replace(events, subjects=[replace(
        s, randomised_at=at(s.randomised_at), unblindings=[replace(u, at=at(u.at)) for u in s.unblindings],
        visits=[replace(v, dispensed_at=at(v.dispensed_at),
                        administered=[replace(d, administered_at=at(d.administered_at)) for d in v.administered],
                        not_administered=[replace(d, not_administered_at=at(d.not_administered_at))
                                          for d in v.not_administered]) for v in s.visits])
        for s in events.subjects])


def _items(parent: ET.Element, group: str, values: Mapping[str, object], repeat: int | None = None) -> None:
    node = _el(parent, "ItemGroupData", ItemGroupOID=group, ItemGroupRepeatKey=repeat)
    for oid, value in values.items():
        if value is not None and value != "":
            _el(node, "ItemData", ItemOID=oid, Value=f"{value:g}" if isinstance(value, float) else value)


def _form(event: ET.Element, form: str) -> ET.Element:
    return _el(event, "FormData", FormOID=form)


def odm_xml(events: TrialEvents, *, created_at: datetime, arms: Arms | None = None) -> bytes:
    events = dated(events)
    study_oid = f"ST.{events.study.code}"
    variant = "unblinded" if arms is not None else "blinded"
    root = ET.Element("ODM", {
        "xmlns": NS, "ODMVersion": "1.3.2", "FileType": "Snapshot", "Granularity": "All",
        "FileOID": _clean(f"cellbench.{events.study.code}.{variant}.{created_at.strftime('%Y%m%dT%H%M%S%fZ')}"),
        "CreationDateTime": created_at.isoformat(timespec="seconds"),
        "Originator": "cellbench", "SourceSystem": "cellbench"})
    _metadata(_el(root, "Study", OID=study_oid), events.study, arms is not None)
    admin = _el(root, "AdminData", StudyOID=study_oid)
    for site in events.sites:
        location = _el(admin, "Location", OID=f"LOC.{site.code}", Name=site.name, LocationType="Site")
        _el(location, "MetaDataVersionRef", StudyOID=study_oid, MetaDataVersionOID=MDV,
            EffectiveDate=events.study.loaded_at.date().isoformat())
    clinical = _el(root, "ClinicalData", StudyOID=study_oid, MetaDataVersionOID=MDV)
    for subject in events.subjects:
        zone = subject.zone
        node = _el(clinical, "SubjectData", SubjectKey=subject.randomisation_number)
        _el(node, "SiteRef", LocationOID=f"LOC.{subject.site_code}")
        rand = {"IT.RANDNO": subject.randomisation_number,
                "IT.RANDDAT": subject.randomised_at.astimezone(zone).date().isoformat()
                if subject.randomised_at else None,
                "IT.RANDDTC": _moment(subject.randomised_at, zone), "IT.SITE": subject.site_code}
        if arms is not None:
            rand["IT.ARM"] = arms[0].get(subject.randomisation_number)
        _items(_form(_el(node, "StudyEventData", StudyEventOID="SE.RAND"), "F.RAND"), "IG.RAND", rand)
        for visit in subject.visits:
            if not (visit.kit_number or visit.administered or visit.not_administered):
                continue
            event = _el(node, "StudyEventData", StudyEventOID="SE.TRT", StudyEventRepeatKey=visit.treatment)
            if visit.kit_number:
                values: dict[str, object] = {"IT.KITNO": visit.kit_number,
                                             "IT.DISPDTC": _moment(visit.dispensed_at, zone)}
                if arms is not None:
                    values["IT.KITARM"] = arms[1].get(visit.kit_number)
                _items(_form(event, "F.DISP"), "IG.DISP", values)
            if visit.administered:
                form = _form(event, "F.ADM")
                for dose in visit.administered:
                    _items(form, "IG.ADM", {"IT.GLAND": dose.gland, "IT.VOLUME": dose.volume_ml,
                                            "IT.ADMDTC": _moment(dose.administered_at, zone),
                                            "IT.ADMBY": dose.by_name}, repeat=dose.number)
            if visit.not_administered:
                form = _form(event, "F.NADM")
                for dose in visit.not_administered:
                    _items(form, "IG.NADM", {"IT.GLAND": dose.gland,
                                             "IT.NADTC": _moment(dose.not_administered_at, zone),
                                             "IT.NAREAS": dose.reason}, repeat=dose.number)
        for number, unblinding in enumerate(subject.unblindings, 1):
            event = _el(node, "StudyEventData", StudyEventOID="SE.UNBL", StudyEventRepeatKey=number)
            _items(_form(event, "F.UNBL"), "IG.UNBL", {"IT.UNBDTC": _moment(unblinding.at, zone),
                                                       "IT.UNBREAS": unblinding.reason_code})
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def csv_text(events: TrialEvents, arms: Arms | None = None) -> str:
    events = dated(events)
    rows: list[list[object]] = []
    for s in events.subjects:
        def at(moment, zone=s.zone) -> str:
            return clock.local_text(moment, zone)

        def row(event: str, treatment: object = "", kit: str | None = "", gland: str = "", volume: object = "",
                time: str = "", reason: str | None = "", subject=s) -> None:
            line: list[object] = [events.study.code, subject.site_code, subject.randomisation_number, event, treatment,
                                  kit or "", gland, volume, time, reason or ""]
            if arms is not None:
                line += [arms[0].get(subject.randomisation_number, ""), arms[1].get(kit or "", "") if kit else ""]
            rows.append(line)

        row("randomised", time=at(s.randomised_at))
        for v in s.visits:
            if v.kit_number:
                row("dispensed", v.treatment, v.kit_number, time=at(v.dispensed_at))
            for dose in v.administered:
                row("administered", v.treatment, v.kit_number, dose.gland, f"{dose.volume_ml:g}",
                    at(dose.administered_at))
            for dose in v.not_administered:
                row("not administered", v.treatment, v.kit_number, dose.gland, time=at(dose.not_administered_at),
                    reason=dose.reason)
        for u in s.unblindings:
            row("emergency unblinding", time=at(u.at), reason=u.reason_code)
    return spreadsheet.csv_text(COLUMNS + (UNBLINDED_COLUMNS if arms is not None else ()), rows)
