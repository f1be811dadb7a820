"""The lot page's tables of recorded values, written out in Python, one call per entry.

A finished lot's page shows every value of its record (some 450): the template's loop, with an
attribute lookup, a filter and an escape per cell, was most of the page's 40 ms and let one request
in six pass 50 ms at ten years (issue 18). The batch record page writes its rows the same way
(batch_record.value_rows); this one keeps the lot page's columns and its correction form.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup

from .batch_record import Moments, _text

TIME_SHOWN = "%Y-%m-%d %H:%M"
# Where the correction form of the page (rendered once by the template) takes each value's id.
VALUE_ID = "__value_id__"


@dataclass(slots=True)
class ValueRows:
    """The page's writer of value rows: its filters (the template environment's own, so a value
    reads as everywhere else) and its times worked out once per minute."""

    shown: Callable[[str | None], str]
    unit: Callable[[str | None], str]
    at: Moments

    @classmethod
    def of(cls, filters: dict[str, Callable]) -> ValueRows:
        local = filters["local"]
        return cls(filters["shown"], filters["unit"], Moments(lambda moment: local(moment, TIME_SHOWN)))

    def __call__(self, ev, correct_form: str | None = None) -> Markup:
        """The rows of one entry's values (lots.EntryView); each value neither superseded nor
        computed gets the correction form when one is given (its VALUE_ID replaced)."""
        head, _, tail = (correct_form or "").partition(VALUE_ID)
        out = []
        for v in ev.values:
            p = ev.parameters.get(v.parameter_code)
            oos = v.within_limits is False
            shown = (f"{_text(self.shown(v.value))} {_text(self.unit(v.unit))}" if v.value is not None else "N/A")
            marks = ("\n<small>computed</small>" if v.computed else "") + (
                f'\n<small class="changed">changed after first entry: {_text(v.correction_reason)}</small>'
                if v.correction_reason else "")
            limits = ""
            if p is not None and (p.min is not None or p.max is not None):
                limits = f"{_text(p.min) if p.min is not None else ''}–{_text(p.max) if p.max is not None else ''}"
            elif p is not None and p.expected is not None:
                limits = "yes" if p.expected else "no"
            if oos:
                limits += '\n<span class="tag red">out of limits</span>'
            form = f"\n{head}{v.id}{tail}" if correct_form and not v.superseded_by and not v.computed else ""
            classes = f"{'superseded' if v.superseded_by else ''} {'oos' if oos and not v.superseded_by else ''}"
            out.append(f'<tr class="{classes}">\n  <td>{_text(p.label if p else v.parameter_code)}</td>\n'
                       f'  <td class="val">{shown}{marks}</td>\n  <td>{limits}</td>\n'
                       f'  <td>{_text(v.entered_by_name)}<br><small>{self.at[v.entered_at]}</small></td>\n'
                       f'  <td>{_text(v.comment or v.na_reason or "")}{form}</td></tr>\n')
        return Markup("".join(out))  # noqa: S704 - every recorded text is escaped above; the form and times are Markup
