"""One page of an impact's findings, strongest first and then by participant number, after a
cursor: the kit channels' findings (all certain, few, gathered in full) merged with the page of
block lines the block channel read. The counts are stated in full on every page.

The cursor is sealed as every list's is (pagination.py) and bound to the participant whose impact
it pages: a cursor of another list or another participant is refused naming `after`.
"""
from __future__ import annotations

from sqlmodel import Session

from .. import pagination
from ..models import Study
from .channels import CERTAIN, Impact, Position, sites_of

PAGE_SIZE = pagination.PAGE_SIZE
NOT_RANDOMISED = "not yet randomised"


def _order(study: Study, participant: str) -> pagination.Order:
    return pagination.Order(f"unblinding impact {study.code}/{participant}", ("rank", "participant", "block_line"))


def position(study: Study, participant: str, cursor: str | None, secret: str) -> Position | None:
    if not cursor:
        return None
    rank, number, block_line = pagination.decode(_order(study, participant), cursor, secret)
    if rank not in (0, 1) or not isinstance(number, str) or not isinstance(block_line, str):
        raise pagination.BadCursor()
    return Position(rank, number, block_line or None)


def cursor(impact: Impact, secret: str) -> str | None:
    at = impact.next
    if at is None:
        return None
    return pagination.encode(_order(impact.study, impact.participant.randomisation_number or ""),
                             (at.rank, at.participant, at.block_line or ""), secret)


def compose(session: Session, impact: Impact) -> None:
    """`findings` (this page), `next` and `total` from what the channels gathered."""
    block = impact.block
    block_lines = block.lines if block and block.strength else []
    rank_of_block = 0 if block and block.strength == CERTAIN else 1
    start = impact.start
    kit_found = sorted(impact.kit_findings)
    if start is not None:  # every kit finding ranks 0: those after the start's
        kit_found = [n for n in kit_found if (0, n) > (start.rank, start.participant)]
    merged = sorted([(0, n, False) for n in kit_found] + [(rank_of_block, n, True) for n in block_lines])
    limit = impact.limit
    page = merged if limit is None else merged[:limit]
    more = len(merged) > len(page) or bool(block and block.strength and block.more)
    sites = sites_of(session, impact.study, [n for _rank, n, from_block in page if from_block])
    in_block = set(block.kit_found) if block and block.strength else set()
    for _rank, number, from_block in page:
        if from_block:
            assert block is not None and block.strength is not None
            impact.findings.append({"participant": number, "site": sites.get(number, NOT_RANDOMISED),
                                    "strength": block.strength, "why": [block.why]})
        else:
            entry = impact.kit_findings[number]
            why = [block.why, *entry["why"]] if block and number in in_block else entry["why"]
            impact.findings.append({**entry, "why": why})
    impact.total = len(impact.kit_findings) + (block.count - len(in_block) if block and block.strength else 0)
    if more and page:
        last_block = next((n for _r, n, from_block in reversed(page) if from_block), None)
        rank, number, _ = page[-1]
        impact.next = Position(rank, number, last_block or (start.block_line if start else None))


def as_json(impact: Impact, secret: str | None = None) -> dict:
    """The page as the API gives it (and as the audit trail keeps a sent impact, every finding)."""
    return {"study": impact.study.code, "participant": impact.participant.randomisation_number,
            "counts": {**impact.counts, "total": impact.total}, "findings": impact.findings,
            "next": cursor(impact, secret) if secret else None, "kits": impact.kits, "notes": impact.notes}

