"""Evidence packets on the demo: each lot's packet (for the demo's QA) and each blinded lot's (for
the demo's monitor) built, then checked by the packet's own verifier in a separate Python; their
sizes and times printed beside the targets.

    PYTHONPATH=. python bench/evidence.py                      # SQLite in a temp folder
    PYTHONPATH=. python bench/evidence.py --database-url postgresql://postgres@127.0.0.1/EMPTY_DB

Target: a lot's packet built within the PDF time limit of its route (20 s) and verified in under 10 s.
The chain segment holds the events from the lot's first to the packet's checkpoint, in pieces between
the checkpoints kept (in service one every hour the chain moved): the demo, built in seconds, keeps
few, so here it is nearly the whole chain since the lot's first event; the figures show how much.
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from cellbench import checkpoints, demo, users  # noqa: E402
from cellbench.config import normalise_url  # noqa: E402
from cellbench.db import Database, migrate  # noqa: E402
from cellbench.evidence import lot as lot_packet  # noqa: E402
from cellbench.evidence import site  # noqa: E402
from cellbench.models import AuditEvent, BlindedLot, Lot  # noqa: E402
from tests.conftest import FAST_HASHER  # noqa: E402

BUILD_TARGET, VERIFY_TARGET = 20.0, 10.0


def verify(data: bytes, into: Path) -> tuple[float, bool]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(into)
        top = archive.namelist()[0].split("/")[0]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-I", str(into / top / "verify_packet.py"), str(into / top)],
                            capture_output=True, text=True, check=False)
    return time.perf_counter() - started, result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    users.configure(12, 5, FAST_HASHER)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = Database(normalise_url(args.database_url) if args.database_url else f"sqlite:///{folder / 'demo.db'}")
        migrate(db)
        with db.write() as session:
            demo.seed(session, users.cli_actor())
        checkpoints.install(checkpoints.create(folder / "checkpoint.key"))
        with db.read() as session:
            numbers = list(session.scalars(select(Lot.number).order_by(Lot.id)))
            codes = list(session.scalars(select(BlindedLot.code).order_by(BlindedLot.id)))
            chain = session.scalar(select(func.count()).select_from(AuditEvent))
            qa = users.actor(session, users.by_username(session, "qa"))
            monitor = users.actor(session, users.by_username(session, "monitor"))
        print(f"demo chain: {chain} events")
        print(f"{'packet':<16}{'events':>7}{'segment':>8}{'JSON MB':>8}{'zip kB':>8}{'build s':>8}{'verify s':>9}")
        worst_build = worst_verify = 0.0
        failed = []
        for number in [*numbers, *codes]:
            started = time.perf_counter()
            built = (site.build(db, monitor, number) if number in codes else
                     lot_packet.build(db, qa, number, zone=ZoneInfo("Europe/Copenhagen")))
            took = time.perf_counter() - started
            with zipfile.ZipFile(io.BytesIO(built.data)) as archive:
                top = archive.namelist()[0].split("/")[0]
                events = len(json.loads(archive.read(f"{top}/audit/events.json")))
                has_segment = f"{top}/chain/segment.json" in archive.namelist()
                segment = json.loads(archive.read(f"{top}/chain/segment.json")) if has_segment else []
                size = archive.getinfo(f"{top}/chain/segment.json").file_size if has_segment else 0
            checked, ok = verify(built.data, folder / number)
            failed += [] if ok else [number]
            worst_build, worst_verify = max(worst_build, took), max(worst_verify, checked)
            print(f"{number:<16}{events:>7}{len(segment):>8}{size / 1e6:>8.2f}{len(built.data) / 1e3:>8.0f}"
                  f"{took:>8.2f}{checked:>9.2f}")
        db.dispose()
    print(f"slowest build {worst_build:.2f} s (target ≤ {BUILD_TARGET:g} s); slowest verification "
          f"{worst_verify:.2f} s (target ≤ {VERIFY_TARGET:g} s); verifier failed on: {', '.join(failed) or 'none'}")
    return 0 if not failed and worst_build <= BUILD_TARGET and worst_verify <= VERIFY_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
