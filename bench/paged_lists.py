"""The lists paged by keyset in issue 18's second pass, at N rows each: what one request costs.

    python bench/paged_lists.py                 # 5,000 rows per list, SQLite, in a temp folder
    python bench/paged_lists.py --rows 20000 --requests 20

Each list (donors, material lots, equipment, users, notifications, kit quarantines, label runs) is
filled with `--rows` rows, bulk-inserted (the service layer would take minutes and the rows'
history is not what is measured). Each route is requested through FastAPI's TestClient as a role
that may open it, and printed with figures that do not depend on the machine's load: SQL
statements per request (a SQLAlchemy event counter), the response's size, and CPU time per request
(time.process_time); the median wall-clock time is printed beside the load average.

Run it on a commit before the lists were paged (with that commit's code on PYTHONPATH) to get the
"before" column: the routes and the data are the same.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient
from sqlalchemy import event, insert, select

from cellbench import studies, users
from cellbench.app import create_app
from cellbench.clock import utcnow
from cellbench.config import Settings
from cellbench.db import Database, migrate
from cellbench.models import Donor, Equipment, KitQuarantine, LabelRun, MaterialLot, Notification, Role, Study, User

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lists import FAST_HASHER, PASSWORD, sign_in

ROUTES = [
    ("bench-qa", "/donors"), ("bench-qa", "/api/v1/donors"),
    ("bench-qa", "/materials"), ("bench-qa", "/api/v1/material-lots"),
    ("bench-qa", "/equipment"), ("bench-qa", "/api/v1/equipment"),
    ("bench-admin", "/admin/users"), ("bench-admin", "/api/v1/users"),
    ("bench-supply", "/notifications"), ("bench-supply", "/api/v1/outbox?state=all"),
    ("bench-supply", "/supply/quarantines"), ("bench-supply", "/api/v1/supply/quarantines"),
    ("bench-supply", "/labels"), ("bench-supply", "/api/v1/label-runs"),
]


def build(db: Database, rows: int) -> None:
    admin = users.cli_actor()
    with db.write() as s:
        for name, role in (("bench-qa", Role.qa), ("bench-admin", Role.admin), ("bench-supply", Role.supply_manager)):
            users.create_user(s, admin, name, name, PASSWORD, [role.value])
        studies.sync_from_files(s, admin)
    now, day = utcnow(), date(2030, 1, 1)
    with db.write() as s:
        study_id = s.scalars(select(Study.id)).first()
        maker = s.scalars(select(User.id).where(User.username == "bench-supply")).one()
        hashed = s.scalars(select(User.password_hash).where(User.id == maker)).one()
        s.execute(insert(Donor), [{"code": f"D-{i:06d}", "consent_date": day, "consent_reference": "v3",
                                   "created_at": now} for i in range(rows)])
        s.execute(insert(MaterialLot), [{"material_code": "dpbs", "name": "DPBS", "supplier": "Gibco",
                                         "supplier_lot": f"L{i:06d}", "expiry": day + timedelta(days=i % 900),
                                         "status": "quarantine" if i % 3 else "released", "received_at": now}
                                        for i in range(rows)])
        s.execute(insert(Equipment), [{"asset_id": f"EQ-{i:06d}", "equipment_code": "centrifuge", "name": "Centrifuge",
                                       "calibration_due": day + timedelta(days=i % 700), "active": True}
                                      for i in range(rows)])
        s.execute(insert(User), [{"username": f"user{i:06d}", "full_name": "Bench User", "password_hash": hashed,
                                  "created_at": now, "password_changed_at": now} for i in range(rows)])
        s.execute(insert(Notification), [{"kind": "bench", "to_address": "sponsor@example.org", "subject": "Bench",
                                          "body": "A message.", "created_at": now,
                                          "state": "sent" if i % 2 else "pending"} for i in range(rows)])
        s.execute(insert(KitQuarantine), [{"number": f"KQ-{i:06d}", "study_id": study_id, "cause": "manual",
                                           "policy": "blinded_lot", "reason": "bench", "kit_count": 0,
                                           "state": "open" if i % 10 == 0 else "lifted", "opened_at": now}
                                          for i in range(rows)])
        s.execute(insert(LabelRun), [{"number": f"LR-{i:06d}", "study_id": study_id, "kind": "outer", "output": "zpl",
                                      "printed": 1, "created_by": maker, "created_at": now,
                                      "reconciled_at": None if i % 10 == 0 else now} for i in range(rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows per list (default 5,000)")
    parser.add_argument("--requests", type=int, default=10, help="requests per route (default 10)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cellbench-paged-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'paged.db'}")
        users.configure(12, 5, FAST_HASHER)
        migrate(db)
        build(db, args.rows)
        counted = {"statements": 0}

        @event.listens_for(db.engine, "before_cursor_execute")
        def _count(*_args) -> None:
            counted["statements"] += 1

        settings = Settings(database_url=db.url, secret_key="bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz",
                            data_dir=Path(tmp))
        app = create_app(settings, password_hasher=FAST_HASHER, database=db)
        print(f"cellbench lists at {args.rows:,} rows each, SQLite (load average {os.getloadavg()[0]:.2f})")
        print(f"{'route (as who)':44s} {'statements':>10s} {'bytes':>9s} {'CPU ms':>8s} {'wall ms':>8s}")
        with TestClient(app) as client:
            who = None
            for user, url in ROUTES:
                if user != who:
                    sign_in(client, user)
                    who = user
                client.get(url)  # warm-up
                cpu, wall, statements, size = [], [], [], 0
                for _ in range(args.requests):
                    counted["statements"] = 0
                    c0, w0 = time.process_time(), time.perf_counter()
                    answer = client.get(url)
                    cpu.append(time.process_time() - c0)
                    wall.append(time.perf_counter() - w0)
                    statements.append(counted["statements"])
                    size = len(answer.content)
                print(f"{url + ' (' + user.removeprefix('bench-') + ')':44s} {statistics.median(statements):10.0f} "
                      f"{size:9,d} {statistics.median(cpu) * 1000:8.1f} {statistics.median(wall) * 1000:8.1f}"
                      f"{'' if answer.status_code == 200 else f'  HTTP {answer.status_code}'}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
