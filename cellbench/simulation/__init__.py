"""The supply simulation (issue 15): a Monte-Carlo model of a study's kits, lots, stock-outs and
expiry waste, its parameters and form, its charts (SVG) and its PDF. Unblinded planning: it reads no
kit, no list and nothing sealed, only the study file and the supply manager's assumptions."""
from __future__ import annotations

from .model import Results, simulate
from .parameters import ArmSupply, Field, Parameters, as_form, defaults, field_names, from_form
from .service import READERS, Plan, form_of, pdf_file, plan, study_choices
