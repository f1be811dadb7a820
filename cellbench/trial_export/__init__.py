"""The export for the trial database: a study's blinded trial events (`events`) as CDISC ODM 1.3.2
(`odm`, its subjects written by `odm_clinical`) or CSV (`tables`), downloaded by the investigator
or the monitor (`exports`).

The unblinded variant (`unblinded`), which reads the arms from the sealed compartment, is imported
by its full name only, so that importing this package never reaches the compartment."""

from __future__ import annotations

from .events import Dose, Subject, TreatmentVisit, TrialEvents, UnblindingEvent, gather, subject_pages
from .exports import (
    EXPORTERS,
    FORMATS,
    ExportFile,
    blinded_export,
    opened,
    parse_format,
    record_download,
    render,
    streamed,
)
from .odm import NS, Arms, odm_chunks, odm_xml
from .tables import COLUMNS, UNBLINDED_COLUMNS, csv_chunks, csv_text
