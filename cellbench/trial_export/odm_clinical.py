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
from .local_times import SiteTimes, Zones

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


def _group(head: str, items: str) -> str:
    """An ItemGroupData (`head`: its opening tag without the closing bracket) with its items (their
    lines, each ended by a newline; the empty ones left out); with none, the element closed on itself."""
    return f"{head}>\n{items}{_GROUP_END}" if items else head + " />"


_RAND = '          <ItemGroupData ItemGroupOID="IG.RAND"'
_DISP = '          <ItemGroupData ItemGroupOID="IG.DISP"'
_UNBL = '          <ItemGroupData ItemGroupOID="IG.UNBL"'


class ClinicalWriter:
    """Writes subjects a page at a time; remembers, for the export, the escaped form of the values
    that repeat. Each piece of `out` is one or more whole lines; the page joins them with newlines."""

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
        local = times.odm(subject.randomised_at) if subject.randomised_at is not None else ""
        arm = self.arms[0].get(subject.randomisation_number) if self.arms is not None else None
        items = ((f"{_RANDNO}{number}{_END}\n" if number else "")
                 + (f"{_RANDDAT}{local[:10]}{_END}\n{_RANDDTC}{local}{_END}\n" if local else "")
                 + (f"{_SITE}{site}{_END}\n" if site else "") + (f"{_ARM}{attr(arm)}{_END}\n" if arm else ""))
        out.append(f'    <SubjectData SubjectKey="{number}">\n      <SiteRef LocationOID="LOC.{site}" />\n'
                   '      <StudyEventData StudyEventOID="SE.RAND">\n        <FormData FormOID="F.RAND">\n'
                   f"{_group(_RAND, items)}\n{_FORM_EVENT_END}")
        for visit in subject.visits:
            if visit.kit_number or visit.administered or visit.not_administered:
                self._treatment(out, visit, times)
        for index, unblinding in enumerate(subject.unblindings, 1):
            reason = self._same(unblinding.reason_code)
            items = ((f"{_UNBDTC}{times.odm(unblinding.at)}{_END}\n" if unblinding.at is not None else "")
                     + (f"{_UNBREAS}{reason}{_END}\n" if reason else ""))
            out.append(f'      <StudyEventData StudyEventOID="SE.UNBL" StudyEventRepeatKey="{index}">\n'
                       f'        <FormData FormOID="F.UNBL">\n{_group(_UNBL, items)}\n{_FORM_EVENT_END}')
        out.append("    </SubjectData>")

    def _treatment(self, out: list[str], visit: TreatmentVisit, times: SiteTimes) -> None:
        """A treatment that happened: its kit dispensed, glands administered and not administered."""
        out.append(f'      <StudyEventData StudyEventOID="SE.TRT" StudyEventRepeatKey="{visit.treatment}">')
        if visit.kit_number:
            arm = self.arms[1].get(visit.kit_number) if self.arms is not None else None
            items = (f"{_KITNO}{attr(visit.kit_number)}{_END}\n"
                     + (f"{_DISPDTC}{times.odm(visit.dispensed_at)}{_END}\n" if visit.dispensed_at is not None else "")
                     + (f"{_KITARM}{attr(arm)}{_END}\n" if arm else ""))
            out.append(f'        <FormData FormOID="F.DISP">\n{_group(_DISP, items)}\n{_FORM_END}')
        if visit.administered:
            out.append('        <FormData FormOID="F.ADM">')
            out.extend(self._given(dose, times) for dose in visit.administered)
            out.append(_FORM_END)
        if visit.not_administered:
            out.append('        <FormData FormOID="F.NADM">')
            out.extend(self._not_given(dose, times) for dose in visit.not_administered)
            out.append(_FORM_END)
        out.append(_EVENT_END)

    def _given(self, dose: Dose, times: SiteTimes) -> str:
        """One gland administered: the gland, the volume, the time, who."""
        gland, volume, name = self._same(dose.gland), dose.volume_ml, self._same(dose.by_name)
        items = ((f"{_GLAND}{gland}{_END}\n" if gland else "")
                 + ("" if volume is None else
                    f"{_VOLUME}{f'{volume:g}' if isinstance(volume, float) else attr(volume)}{_END}\n")
                 + (f"{_ADMDTC}{times.odm(dose.administered_at)}{_END}\n" if dose.administered_at is not None else "")
                 + (f"{_ADMBY}{name}{_END}\n" if name else ""))
        return _group(f'          <ItemGroupData ItemGroupOID="IG.ADM" ItemGroupRepeatKey="{dose.number}"', items)

    def _not_given(self, dose: Dose, times: SiteTimes) -> str:
        """One gland not administered: the gland, the time, why."""
        gland, at, reason = self._same(dose.gland), dose.not_administered_at, self._same(dose.reason)
        items = ((f"{_GLAND}{gland}{_END}\n" if gland else "")
                 + (f"{_NADTC}{times.odm(at)}{_END}\n" if at is not None else "")
                 + (f"{_NAREAS}{reason}{_END}\n" if reason else ""))
        return _group(f'          <ItemGroupData ItemGroupOID="IG.NADM" ItemGroupRepeatKey="{dose.number}"', items)
