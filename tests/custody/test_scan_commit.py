"""Scans from scanners with API tokens share commits (scanning.GroupCommit), yet each scan stands or
falls alone: its custody event and its audit event together, a refused scan leaving nothing."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from cellbench import integrity, qrpayload, users
from cellbench.custody import scanning
from cellbench.errors import InvalidInput
from cellbench.models import AuditEvent, CustodyEvent

from ..conftest import SECRET


def _token(db, username: str) -> str:
    with db.write() as s:
        user = users.by_username(s, username)
        return users.create_token(s, users.actor(s, user), user, "ward scanner")


def _counts(db) -> tuple[int, int]:
    with db.read() as s:
        return (s.scalar(select(func.count()).select_from(CustodyEvent).where(CustodyEvent.action == "scanned")),
                s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "kit scanned")))


def test_concurrent_scans_are_each_recorded_once_and_a_refused_one_leaves_nothing(app, db, kit_world, monkeypatch):
    token = _token(db, "frida")
    groups: list[int] = []
    write = scanning.GroupCommit._write
    monkeypatch.setattr(scanning.GroupCommit, "_write",
                        lambda self, group: groups.append(len(group)) or write(self, group))
    numbers = (kit_world.active + kit_world.placebo)[:6]
    codes = [qrpayload.make_payload(n, SECRET) for n in numbers for _ in range(4)]
    forged = qrpayload.make_payload(numbers[0], "a-key-that-cellbench-never-issued-0123456789")
    with TestClient(app) as client:
        def scan(code: str):
            return client.post("/api/v1/scan", json={"code": code, "station": "RH-ENT pharmacy"},
                               headers={"Authorization": f"Bearer {token}"})

        with ThreadPoolExecutor(12) as pool:  # twelve scanners at once, one of them holding a forged label
            answers = list(pool.map(scan, [*codes[:12], forged, *codes[12:]]))
    refused = answers.pop(12)
    assert refused.status_code == 422 and refused.json()["field"] == "code"
    assert [a.status_code for a in answers] == [200] * len(codes)
    assert [a.json()["kit_number"] for a in answers] == [n for n in numbers for _ in range(4)]
    assert _counts(db) == (len(codes), len(codes))
    assert max(groups) > 1, f"no two scans shared a commit: {groups}"
    assert integrity.verify(db).problems == []  # one unbroken chain, however the scans were grouped


def test_a_revoked_token_is_refused_and_records_nothing(app, db, kit_world):
    token = _token(db, "frida")
    with db.write() as s:
        frida = users.by_username(s, "frida")
        (row,) = users.tokens_of(s, frida)
        users.revoke_token(s, users.actor(s, frida), row.id)
    before = _counts(db)
    with TestClient(app) as client:
        answer = client.post("/api/v1/scan", json={"code": kit_world.active[0]},
                             headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and "revoked" in answer.json()["error"]
    assert _counts(db) == before


def _frida(db):
    with db.read() as s:
        return users.actor(s, users.by_username(s, "frida"))


def _in_one_group(db, requests: list[scanning.ScanRequest], monkeypatch) -> tuple[list, list[int]]:
    """The scans sent to one GroupCommit at the same moment; their outcomes and the groups written."""
    groups: list[int] = []
    write = scanning.GroupCommit._write
    monkeypatch.setattr(scanning.GroupCommit, "_write",
                        lambda self, group: groups.append(len(group)) or write(self, group))

    async def together():
        writer = scanning.GroupCommit(db, SECRET)
        return await asyncio.gather(*(writer.scan(r.actor, r.code, r.station) for r in requests),
                                    return_exceptions=True)

    return asyncio.run(together()), groups


def test_a_scan_that_cannot_be_stored_is_refused_alone_and_the_rest_of_its_group_is_recorded(db, kit_world,
                                                                                              monkeypatch):
    frida, numbers = _frida(db), kit_world.active[:3]
    requests = [scanning.ScanRequest(frida, qrpayload.make_payload(n, SECRET), "RH-ENT pharmacy") for n in numbers]
    requests.insert(1, scanning.ScanRequest(frida, qrpayload.make_payload(kit_world.placebo[0], SECRET),
                                            "desk\x00"))  # a NUL passes the length check, not the database's
    before = _counts(db)
    outcomes, groups = _in_one_group(db, requests, monkeypatch)
    assert groups == [4], "the four scans were written as one group"
    assert isinstance(outcomes.pop(1), InvalidInput)
    assert [o.kit_number for o in outcomes] == numbers
    assert _counts(db) == (before[0] + 3, before[1] + 3)
    assert integrity.verify(db).problems == []


def test_a_group_that_fails_while_writing_leaves_none_of_its_rows_and_each_scan_is_recorded_once(db, kit_world,
                                                                                                   monkeypatch):
    frida, numbers = _frida(db), kit_world.placebo[:4]
    requests = [scanning.ScanRequest(frida, qrpayload.make_payload(n, SECRET), "RH-ENT pharmacy") for n in numbers]

    def fails_after_the_custody_rows(conn, changes):
        raise OperationalError("INSERT INTO audit_event", {}, Exception("the server went away"))

    monkeypatch.setattr(scanning.audit, "record_all", fails_after_the_custody_rows)
    before = _counts(db)
    outcomes, groups = _in_one_group(db, requests, monkeypatch)
    assert groups == [4] and [o.kit_number for o in outcomes] == numbers
    assert _counts(db) == (before[0] + 4, before[1] + 4), "redone one by one, and nothing of the failed group kept"
    assert integrity.verify(db).problems == []
