"""What the blinded roles see, as they see it: every request they make over HTTP (status, size,
time taken, body), and the structured records the predictors read (the site's stock before each
assignment, refusals, scans, each kit's views, quarantine snapshots, blinded lots, exports).

Nothing here knows an arm. `Truth` is filled separately, by an unblinded reader of the sealed
compartment, and only the predictors' scoring puts the two together.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..conftest import PASSWORD, Client, sign_in

# The blinded roles of issue 12, one named user each (tests/conftest.py PEOPLE).
BLINDED = {"frida": "pharmacist", "ida": "investigator", "mette": "monitor", "adam": "admin"}


@dataclass(frozen=True)
class KitLine:
    """One kit as a blinded list shows it."""

    number: str
    blinded_lot: str | None
    expiry: date | None
    state: str
    location: str

    @classmethod
    def of(cls, row: dict) -> KitLine:
        expiry = date.fromisoformat(row["expiry"]) if row.get("expiry") else None
        return cls(row["kit_number"], row.get("blinded_lot"), expiry, row["state"], row.get("location", ""))


@dataclass
class Attempt:
    """One kit assignment as the pharmacist lived it: the study's kits in the site's stock just
    before (and the held ones, when refused), then the kit assigned or the refusal."""

    day: date
    study: str
    participant: str  # randomisation number
    treatment: int
    stock: list[KitLine]
    kit: str | None  # None: refused
    refusal: str | None = None
    held: list[KitLine] = field(default_factory=list)


@dataclass
class Seen:
    """One request a blinded role made."""

    who: str
    method: str
    path: str
    status: int
    size: int
    seconds: float
    body: Any


@dataclass
class Scan:
    """One of the pharmacist's own scans: which kit, how long the answer took, how big it was."""

    kind: str  # "receipt", "dispense", "lookup"
    kit: str
    seconds: float
    size: int
    status: int


@dataclass
class Observations:
    attempts: list[Attempt] = field(default_factory=list)
    scans: list[Scan] = field(default_factory=list)
    # kit number -> what each blinded role read of it at the end: "who path" -> Seen
    kit_views: dict[str, dict[str, Seen]] = field(default_factory=dict)
    # after each lot quarantine opened: every kit of the study as the monitor lists it
    quarantine_snapshots: list[tuple[str, list[KitLine]]] = field(default_factory=list)
    blinded_lots: dict[str, dict] = field(default_factory=dict)  # code -> GET /api/v1/blinded-lots/{code}
    exports: dict[str, str] = field(default_factory=dict)  # who -> /audit.csv as that role downloads it
    labels: dict[str, str] = field(default_factory=dict)  # kit number -> the QR payload on its label
    log: list[Seen] = field(default_factory=list)  # every request, in order

    def requests(self) -> int:
        return len(self.log)


@dataclass
class Truth:
    """The sealed answers, read once by the supply manager at the end (unblinded, logged)."""

    kit_arm: dict[str, str]  # kit number -> arm
    participant_arm: dict[str, str]  # randomisation number -> arm


class Observer:
    """Signed-in HTTP clients of the blinded users; every request is logged in `seen.log`. A
    session that went idle while the story's clock moved on is signed in again."""

    def __init__(self, app, seen: Observations):
        self.app, self.seen = app, seen
        self.clients: dict[str, Client] = {}

    def _client(self, who: str, fresh: bool = False) -> Client:
        if fresh or who not in self.clients:
            if who in self.clients:
                self.clients[who].__exit__(None, None, None)
            # Entered, so that one event-loop thread serves all its requests (an unentered
            # TestClient starts a thread per request: most of the trial's time).
            client = Client(self.app)
            client.__enter__()
            client.cookies = sign_in(self.app, who, PASSWORD).cookies
            self.clients[who] = client
        return self.clients[who]

    def close(self) -> None:
        for client in self.clients.values():
            client.__exit__(None, None, None)
        self.clients.clear()

    def request(self, who: str, method: str, path: str, **kwargs) -> Seen:
        for attempt in (0, 1):
            client = self._client(who, fresh=attempt == 1)
            started = time.perf_counter()
            response = client.request(method, path, follow_redirects=False, **kwargs)
            seconds = time.perf_counter() - started
            signed_out = response.status_code == 401 or (
                response.status_code in (302, 303) and "/login" in response.headers.get("location", ""))
            if not signed_out:
                break
        kind = response.headers.get("content-type", "")
        body: Any = response.json() if "json" in kind else response.text if "text" in kind else response.content
        seen = Seen(who, method, path, response.status_code, len(response.content), seconds, body)
        self.seen.log.append(seen)
        return seen

    def get(self, who: str, path: str, **kwargs) -> Seen:
        return self.request(who, "GET", path, **kwargs)

    def kit_lines(self, who: str, study: str, state: str | None = None) -> list[KitLine]:
        query = f"/api/v1/kits?study={study}&limit=1000" + (f"&state={state}" if state else "")
        seen = self.get(who, query)
        assert seen.status == 200, (query, seen.status, seen.body)
        return [KitLine.of(row) for row in seen.body["kits"]]


# What differs between two kits in the same situation without saying anything about arms — kit
# numbers, participants, shipments, quarantines, times — and between the two studies (their codes,
# blinded lots, dates): masked before comparing, so that one study's kits can teach about the other's.
_MASKS = [
    (re.compile(r'(name="csrf_token" value=")[^"]+'), r"\1<token>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:?\d\d|Z)?"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d"), "<date>"),
    (re.compile(r"\bNCT\d{8}\b"), "<study>"),
    (re.compile(r"\b[XS]B\d\d-\d{3}\b"), "<blinded lot>"),
    (re.compile(r"\b[XS]-\d{3}\b"), "<participant>"),
    (re.compile(r"\bSCR-[A-Z0-9-]+\b"), "<screening>"),
    (re.compile(r"\b(SH|KQ|BL|PR|DR)-[A-Z0-9-]+\b"), r"<\1>"),
]


def masked(text: str, kit_numbers: tuple[str, ...] = ()) -> str:
    for number in kit_numbers:
        text = text.replace(number, "<kit>")
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text
