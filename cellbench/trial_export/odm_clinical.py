"""The ODM file's ClinicalData: one SubjectData per participant, written as text.

The subjects are written as text, not built as ElementTree nodes: at ten years an export holds
hundreds of thousands of elements, and building and serialising the tree was most of its time. The
text is exactly what ET.indent and ET.tostring wrote for the same tree (tests compare it with
tests/trial_export_reference.py byte for byte): two spaces of indentation a level, attributes
escaped as ElementTree escapes them, an element without children closed as `<X ... />`, and every
character XML 1.0 cannot hold replaced by U+FFFD.

What costs per participant is kept small: each line is one f-string of fixed text and values; a
value is escaped only if it holds a character that needs it (one regular-expression search), and
a value that repeats (a site code, a gland, a name, a reason) is escaped once per export; a time is
written from its stored text, each UTC hour converted to the site's zone once (local_times).
"""
from __future__ import annotations

import re
from collections.abc import Callable

from .events import Dose, Subject, TreatmentVisit
from .local_times import Moment, SiteTimes, Zones

NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# what ElementTree escapes in an attribute value, or what XML cannot hold at all
_UNSAFE = re.compile('[&<>"\r\n\t]|' + NOT_XML.pattern)
_ENTITIES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("\r", "&#13;"), ("\n", "&#10;"),
             ("\t", "&#09;"))
Arms = tuple[dict[str, str], dict[str, str]]  # participant number -> arm, kit number -> arm


def attr(value: object) -> str:
    """An attribute value as ElementTree writes it, the characters XML cannot hold replaced."""
    text = value if isinstance(value, str) else str(value)
    if _UNSAFE.search(text):
        text = NOT_XML.sub("\ufffd", text)
        for raw, entity in _ENTITIES:
            text = text.replace(raw, entity)
    return text


class Once:
    """`make(value)` for each distinct text once (an empty or missing text is "")."""

    def __init__(self, make: Callable[[str], str]):
        self._make = make
        self._made: dict[str, str] = {}

    def __call__(self, value: str | None) -> str:
        if not value:
            return ""
        made = self._made.get(value)
        if made is None:
            made = self._made[value] = self._make(value)
        return made


def _item(oid: str, pad: str) -> str:
    return f'{pad}<ItemData ItemOID="{oid}" Value="'


# The lines, by their indentation: SubjectData 4, StudyEventData 6, FormData 8, ItemGroupData 10, ItemData 12.
_END = '" />'
_GROUP_END = "          </ItemGroupData>"
_FORM_END = "        </FormData>"
_EVENT_END = "      </StudyEventData>"
_FORM_EVENT_END = f"{_FORM_END}\n{_EVENT_END}"
_RANDNO, _RANDDAT, _RANDDTC, _SITE, _ARM = (_item(oid, " " * 12) for oid in
                                            ("IT.RANDNO", "IT.RANDDAT", "IT.RANDDTC", "IT.SITE", "IT.ARM"))
_KITNO, _DISPDTC, _KITARM = (_item(oid, " " * 12) for oid in ("IT.KITNO", "IT.DISPDTC", "IT.KITARM"))
_GLAND, _VOLUME, _ADMDTC, _ADMBY = (_item(oid, " " * 12) for oid in ("IT.GLAND", "IT.VOLUME", "IT.ADMDTC", "IT.ADMBY"))
_NADTC, _NAREAS = (_item(oid, " " * 12) for oid in ("IT.NADTC", "IT.NAREAS"))
_UNBDTC, _UNBREAS = (_item(oid, " " * 12) for oid in ("IT.UNBDTC", "IT.UNBREAS"))


def _group(out: list[str], head: str, items: list[str]) -> None:
    """An ItemGroupData (`head`: its opening tag without the closing bracket) with its items, the
    empty ones left out; with none, the element closed on itself."""
    if items:
        out.append(head + ">\n" + "\n".join(items) + "\n" + _GROUP_END)
    else:
        out.append(head + " />")


class ClinicalWriter:
    """Writes subjects a page at a time; remembers, for the export, the escaped form of the values
    that repeat."""

    def __init__(self, arms: Arms | None):
        self.arms = arms
        self._same = Once(attr)  # a repeating value, escaped once
        self._zones = Zones()  # each site zone's times, an hour converted once

    def page(self, subjects: list[Subject]) -> bytes:
        out: list[str] = []
        for subject in subjects:
            self._subject(out, subject)
        return "\n".join(out).encode()

    def _subject(self, out: list[str], subject: Subject) -> None:
        number, site = attr(subject.randomisation_number), self._same(subject.site_code)
        times = self._zones(subject.zone)
        out.append(f'    <SubjectData SubjectKey="{number}">\n      <SiteRef LocationOID="LOC.{site}" />\n'
                   '      <StudyEventData StudyEventOID="SE.RAND">\n        <FormData FormOID="F.RAND">')
        items = [_RANDNO + number + _END] if number else []
        if subject.randomised_at is not None:
            local = times.odm(subject.randomised_at)
            items.append(_RANDDAT + local[:10] + _END)
            items.append(_RANDDTC + local + _END)
        if site:
            items.append(_SITE + site + _END)
        if self.arms is not None and (arm := self.arms[0].get(subject.randomisation_number)):
            items.append(_ARM + attr(arm) + _END)
        _group(out, '          <ItemGroupData ItemGroupOID="IG.RAND"', items)
        out.append(_FORM_EVENT_END)
        for visit in subject.visits:
            if visit.kit_number or visit.administered or visit.not_administered:
                self._treatment(out, visit, times)
        for index, unblinding in enumerate(subject.unblindings, 1):
            out.append(f'      <StudyEventData StudyEventOID="SE.UNBL" StudyEventRepeatKey="{index}">\n'
                       '        <FormData FormOID="F.UNBL">')
            items = [_UNBDTC + times.odm(unblinding.at) + _END] if unblinding.at is not None else []
            if reason := self._same(unblinding.reason_code):
                items.append(_UNBREAS + reason + _END)
            _group(out, '          <ItemGroupData ItemGroupOID="IG.UNBL"', items)
            out.append(_FORM_EVENT_END)
        out.append("    </SubjectData>")

    def _treatment(self, out: list[str], visit: TreatmentVisit, times: SiteTimes) -> None:
        """A treatment that happened: its kit dispensed, glands administered and not administered."""
        out.append(f'      <StudyEventData StudyEventOID="SE.TRT" StudyEventRepeatKey="{visit.treatment}">')
        if visit.kit_number:
            out.append('        <FormData FormOID="F.DISP">')
            items = [_KITNO + attr(visit.kit_number) + _END]
            if visit.dispensed_at is not None:
                items.append(_DISPDTC + times.odm(visit.dispensed_at) + _END)
            if self.arms is not None and (arm := self.arms[1].get(visit.kit_number)):
                items.append(_KITARM + attr(arm) + _END)
            _group(out, '          <ItemGroupData ItemGroupOID="IG.DISP"', items)
            out.append(_FORM_END)
        if visit.administered:
            out.append('        <FormData FormOID="F.ADM">')
            for dose in visit.administered:
                self._dose(out, "IG.ADM", dose, dose.administered_at, times, _ADMDTC, self._given)
            out.append(_FORM_END)
        if visit.not_administered:
            out.append('        <FormData FormOID="F.NADM">')
            for dose in visit.not_administered:
                self._dose(out, "IG.NADM", dose, dose.not_administered_at, times, _NADTC, self._not_given)
            out.append(_FORM_END)
        out.append(_EVENT_END)

    def _dose(self, out: list[str], group: str, dose: Dose, at: Moment | None, times: SiteTimes, time_item: str,
              rest: Callable[[Dose, list[str]], None]) -> None:
        """One gland's ItemGroupData: the gland, then (per `rest`) the volume or nothing, the time,
        then (per `rest`) who administered or why not."""
        items = [_GLAND + gland + _END] if (gland := self._same(dose.gland)) else []
        if group == "IG.ADM" and dose.volume_ml is not None:
            volume = dose.volume_ml
            items.append(_VOLUME + (f"{volume:g}" if isinstance(volume, float) else attr(volume)) + _END)
        if at is not None:
            items.append(time_item + times.odm(at) + _END)
        rest(dose, items)
        _group(out, f'          <ItemGroupData ItemGroupOID="{group}" ItemGroupRepeatKey="{dose.number}"', items)

    def _given(self, dose: Dose, items: list[str]) -> None:
        if name := self._same(dose.by_name):
            items.append(_ADMBY + name + _END)

    def _not_given(self, dose: Dose, items: list[str]) -> None:
        if reason := self._same(dose.reason):
            items.append(_NAREAS + reason + _END)
