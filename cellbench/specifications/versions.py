"""Specification versions in the database: loaded from specs/, made effective by QA's signature.

A lot binds to the version row it was started under. The row keeps the parsed content, so a lot
reads its own version's steps and limits whatever happens to the files later; an effective version
can never change (a changed file for it is refused: write a new version instead).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select
from sqlmodel import Session, col

from .. import audit, signatures, users
from ..audit import Actor
from ..clock import utcnow
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Meaning, Role, SpecStatus, SpecVersion, User
from ..statemachine import claim
from .loading import load_all
from .model import Specification


@signatures.content_rule("spec_version")
def _content(session: Session, spec_id: str) -> dict:
    row = session.get(SpecVersion, int(spec_id))
    if row is None:
        raise NotFound("No such specification version.")
    return {"product": row.product_code, "version": row.version, "file_sha256": row.file_sha256,
            "content": json.loads(row.content)}


@lru_cache(maxsize=64)
def _parse(content: str) -> Specification:
    return Specification.model_validate(json.loads(content))


def parsed(row: SpecVersion) -> Specification:
    """The specification a lot was made under, from the stored content (cached: it never changes)."""
    return _parse(row.content)


def label(row: SpecVersion) -> str:
    return f"{row.product_code} v{row.version}"


def sync_from_files(session: Session, actor: Actor, root: Path | None = None) -> list[SpecVersion]:
    """Load every file under specs/ as a draft version; refuse a changed file of an effective one."""
    loaded = []
    for spec in load_all(root):
        code, version = spec.product.code, spec.product.version
        if spec.sha256 is None:  # load_all hashes every file it reads
            raise InvalidInput(f"{spec.file}: the file's hash is missing.", field="file")
        sha256 = spec.sha256
        content = json.dumps(spec.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        row = session.scalars(select(SpecVersion).where(col(SpecVersion.product_code) == code,
                                                        col(SpecVersion.version) == version)).first()
        if row is None:
            row = SpecVersion(product_code=code, version=version, kind=spec.product.kind, name=spec.product.name,
                              file_sha256=sha256, content=content, loaded_at=utcnow())
            session.add(row)
            session.flush()
            audit.record(session, actor, "specification loaded", "specification", label(row),
                         field="file_sha256", new=sha256)
        elif row.file_sha256 != sha256:
            if row.status != SpecStatus.draft:
                raise Conflict(f"{spec.file}: {label(row)} is {SpecStatus(row.status).value} and cannot change. "
                               f"Put the change in a new version (v{version + 1}.toml).", field="file")
            audit.record(session, actor, "draft specification reloaded", "specification", label(row),
                         field="file_sha256", old=row.file_sha256, new=sha256, reason="file edited before approval")
            row.file_sha256, row.content, row.name = sha256, content, spec.product.name
        loaded.append(row)
    session.flush()
    return loaded


def approve(session: Session, qa: User, password: str, spec_id: int) -> SpecVersion:
    """QA signs a draft: it becomes the effective version, and the previous one is superseded."""
    users.require_role(users.actor(session, qa), Role.qa)
    row = session.get(SpecVersion, spec_id)
    if row is None:
        raise NotFound("No such specification version.", field="spec")
    claim(session, row)  # two QA approving at once: the second finds it effective
    if row.status != SpecStatus.draft:
        raise InvalidInput(f"{label(row)} is already {SpecStatus(row.status).value}.", field="spec")
    sig = signatures.sign(session, qa, password, Meaning.approved, "spec_version", str(row.id))
    actor = users.actor(session, qa)
    for older in session.scalars(select(SpecVersion).where(col(SpecVersion.product_code) == row.product_code,
                                                           col(SpecVersion.status) == SpecStatus.effective.value)):
        older.status = SpecStatus.superseded
        audit.record(session, actor, "specification superseded", "specification", label(older), field="status",
                     old="effective", new="superseded")
    row.status, row.effective_at, row.signature_id = SpecStatus.effective, utcnow(), sig.id
    audit.record(session, actor, "specification effective", "specification", label(row), field="status",
                 old="draft", new="effective")
    session.flush()
    return row


def effective(session: Session, product_code: str) -> SpecVersion:
    row = session.scalars(select(SpecVersion).where(col(SpecVersion.product_code) == product_code,
                                                    col(SpecVersion.status) == SpecStatus.effective.value)).first()
    if row is None:
        raise InvalidInput(f"No effective specification for '{product_code}': QA must approve one first.",
                           field="product")
    return row


def all_versions(session: Session) -> list[SpecVersion]:
    return list(session.scalars(select(SpecVersion).order_by(col(SpecVersion.product_code), col(SpecVersion.version))))
