#!/usr/bin/env python3
"""Check a cellbench evidence packet offline and say, line by line, what it proves.

    python verify_packet.py [PACKET] [--key-id ID | --key PUBLIC_KEY]

PACKET is the packet's folder (unzipped) or its .zip; by default the folder this file is in.
Give the key id (or the public key) that the cellbench site gave you by another way (on paper,
`cellbench keys public`): then the packet must be signed by that key, not merely by the key it
carries. Exit 0: every check held; exit 1: the first lines marked FAILED say what did not.

It needs Python 3.10 or later and the `cryptography` package, nothing of cellbench: an inspector
can read all of it. The hashes are recomputed exactly as cellbench computes them (cellbench/audit.py
`event_hash`, cellbench/signatures.py `_record_hash`, cellbench/checkpoints/signing.py).
"""
from __future__ import annotations

import base64
import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# The columns of an audit event, in the order they are hashed (cellbench.audit.HASHED_COLUMNS).
HASHED_COLUMNS = ("seq", "at", "user_id", "user_name", "action", "entity_type", "entity_id",
                  "field", "old_value", "new_value", "reason", "visibility")
CHECKPOINT_PREFIX = "cellbench checkpoint v1"
PACKET_PREFIX = "cellbench evidence packet v1"
MANIFEST, PACKET_SIGNATURE = "MANIFEST.json", "MANIFEST.sig"
KEY_FILE, CHECKPOINTS, SEGMENT, EVENTS, SIGNATURES = ("public_key.txt", "checkpoints.json", "chain/segment.json",
                                                     "audit/events.json", "signatures.json")
SHOWN_FAILURES = 8  # of one kind: the first ones name the place; the rest follow from them


class Failed(Exception):
    """A check that cannot go on (its file is missing or unreadable)."""


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def event_hash(prev_hash: str, event: dict[str, Any]) -> str:
    canonical = json.dumps([event[c] for c in HASHED_COLUMNS], ensure_ascii=False, separators=(",", ":"))
    return sha256(f"{prev_hash}|{canonical}")


def record_hash(sig: dict[str, Any]) -> str:
    fields = [sig["id"], sig["signer_id"], sig["signer_name"], sig["at"], sig["meaning"], sig["entity_type"],
              sig["entity_id"], sig["content_hash"]]
    return sha256(json.dumps(fields, ensure_ascii=False, separators=(",", ":")))


def checkpoint_message(cp: dict[str, Any]) -> bytes:
    return f"{CHECKPOINT_PREFIX}\n{cp['seq']}\n{cp['head_hash']}\n{cp['at']}".encode()


def packet_message(manifest: bytes) -> bytes:
    return f"{PACKET_PREFIX}\n{sha256(manifest)}".encode()


def key_id_of(raw_public: bytes) -> str:
    return sha256(raw_public)[:16]


def read_packet(path: Path) -> dict[str, bytes]:
    """Every file of the packet by its name inside the packet (the zip's top folder left out)."""
    if path.is_dir():
        files = {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
        return {name: data for name, data in files.items() if "__pycache__" not in name}
    with zipfile.ZipFile(path) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) == 1 and all("/" in name for name in files):
        files = {name.split("/", 1)[1]: data for name, data in files.items()}
    return files


class Verifier:
    def __init__(self, files: dict[str, bytes], pinned_key_id: str | None = None):
        self.files, self.pinned = files, pinned_key_id
        self.lines: list[str] = []
        self.failures = 0
        self.manifest: dict[str, Any] = {}
        self.public: Ed25519PublicKey | None = None
        self.segment: dict[int, dict[str, Any]] = {}
        self.heads: dict[int, str] = {}  # the checkpoints' events and head hashes

    # --- saying what was found -----------------------------------------------------------------

    def proved(self, text: str) -> None:
        self.lines.append(f"OK      {text}")

    def failed(self, text: str) -> None:
        self.failures += 1
        self.lines.append(f"FAILED  {text}")

    def not_proved(self, text: str) -> None:
        self.lines.append(f"NOT PROVED  {text}")

    def json_file(self, name: str) -> Any:
        if name not in self.files:
            raise Failed(f"{name} is missing from the packet")
        try:
            return json.loads(self.files[name].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise Failed(f"{name} is not readable JSON ({exc})") from None

    # --- the checks ----------------------------------------------------------------------------

    def run(self) -> bool:
        steps = [self.check_manifest, self.check_key, self.check_packet_signature]
        self.manifest = self._manifest()
        kind = self.manifest.get("kind")
        if kind == "lot":
            steps += [self.check_checkpoint, self.check_segment, self.check_events, self.check_signatures,
                      self.say_what_lot_does_not_prove]
        elif kind == "blinded_lot":
            steps += [self.check_signatures, self.say_what_blinded_does_not_prove]
        else:
            self.failed(f"{MANIFEST}: unknown packet kind {kind!r}")
        for step in steps:
            try:
                step()
            except Failed as problem:
                self.failed(str(problem))
            except (KeyError, TypeError, ValueError) as exc:  # a file of the wrong shape
                what = step.__name__.replace("check_", "")
                self.failed(f"{what}: a file has not the shape cellbench writes ({exc!r})")
        return self.failures == 0

    def _manifest(self) -> dict[str, Any]:
        try:
            manifest = self.json_file(MANIFEST)
        except Failed as problem:
            self.failed(str(problem))
            return {}
        return manifest if isinstance(manifest, dict) else {}

    def check_manifest(self) -> None:
        listed: dict[str, str] = self.manifest.get("files") or {}
        if not listed:
            raise Failed(f"{MANIFEST} lists no files")
        bad = 0
        for name, digest in sorted(listed.items()):
            if name not in self.files:
                self.failed(f"{name}: listed in the manifest but missing from the packet")
                bad += 1
            elif sha256(self.files[name]) != digest:
                self.failed(f"{name}: its SHA-256 does not match the manifest (the file was changed or replaced)")
                bad += 1
        for name in sorted(set(self.files) - set(listed) - {MANIFEST, PACKET_SIGNATURE}):
            self.failed(f"{name}: in the packet but not in the manifest (added afterwards)")
            bad += 1
        if not bad:
            self.proved(f"manifest: all {len(listed)} files are present and match their SHA-256 in {MANIFEST}")

    def check_key(self) -> None:
        if KEY_FILE not in self.files:
            raise Failed(f"{KEY_FILE} is missing from the packet")
        try:
            raw = base64.b64decode(self.files[KEY_FILE].decode().strip(), validate=True)
            self.public = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise Failed(f"{KEY_FILE}: not an Ed25519 public key (44 characters of base64)") from None
        key_id = key_id_of(raw)
        if self.manifest.get("key_id") != key_id:
            self.failed(f"{KEY_FILE}: key {key_id} is not the key the manifest names ({self.manifest.get('key_id')})")
        if self.pinned is not None and self.pinned != key_id:
            self.public = None
            raise Failed(f"{KEY_FILE}: the packet carries key {key_id}, not the key {self.pinned} you gave: "
                         "it was not signed by that cellbench")
        if self.pinned is not None:
            self.proved(f"public key: {key_id}, the key you gave")
        else:
            self.proved(f"public key: {key_id} (compare it with the key id the manufacturer gave you another way, "
                        "or run again with --key-id)")

    def _signature_holds(self, message: bytes, signature: str) -> bool:
        if self.public is None:
            raise Failed("no public key to check the signature with")
        try:
            self.public.verify(base64.b64decode(signature.strip(), validate=True), message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def check_packet_signature(self) -> None:
        if PACKET_SIGNATURE not in self.files:
            raise Failed(f"{PACKET_SIGNATURE} is missing: nothing says who made this packet")
        if not self._signature_holds(packet_message(self.files[MANIFEST]), self.files[PACKET_SIGNATURE].decode()):
            raise Failed(f"{MANIFEST}: the packet's signature does not hold: the manifest was changed after "
                         "cellbench signed it, or another key signed it")
        self.proved(f"packet signature: {MANIFEST} (and so every file it lists) is as cellbench issued it "
                    f"on {self.manifest.get('built_at')} for {self.manifest.get('built_by')}")

    def check_checkpoint(self) -> None:
        """Every checkpoint the segment's pieces end at or start after, the last one the packet's own."""
        found = self.json_file(CHECKPOINTS)
        if not isinstance(found, list) or not found:
            raise Failed(f"{CHECKPOINTS} holds no checkpoint")
        for cp in found:
            if cp.get("key_id") != self.manifest.get("key_id"):
                self.failed(f"{CHECKPOINTS}: checkpoint {cp.get('seq')} is signed by key {cp.get('key_id')}, "
                            "not the packet's key")
            if not self._signature_holds(checkpoint_message(cp), cp["signature"]):
                raise Failed(f"{CHECKPOINTS}: the signature of checkpoint {cp.get('seq')} does not hold: its event "
                             "number, head hash or time was changed")
        last = found[-1]
        if self.manifest.get("checkpoint") != {k: last[k] for k in ("seq", "head_hash", "at")}:
            self.failed(f"{CHECKPOINTS}: the last is not the checkpoint the manifest names")
        self.heads = {cp["seq"]: cp["head_hash"] for cp in found}
        self.checkpoint = last
        earlier = (f" (and {len(found) - 1} earlier ones, where the segment's pieces end or start after)"
                   if len(found) > 1 else "")
        self.proved(f"checkpoint: signed by the key: at {last['at']} the audit chain ended at event {last['seq']} "
                    f"with hash {last['head_hash']}{earlier}")

    def _at_checkpoint(self, event: dict[str, Any]) -> bool:
        return self.heads.get(event["seq"]) == event["hash"]

    def check_segment(self) -> None:
        """The segment is one or more pieces of the chain, each ending at a signed checkpoint (each hash
        covers everything before it, so a signed end proves the piece), and each after the first starting
        right after one, linked to its hash: so no event is missing within the pieces. Within a piece
        every hash is recomputed and every link checked."""
        events = self.json_file(SEGMENT)
        if not isinstance(events, list) or not events:
            raise Failed(f"{SEGMENT} holds no events")
        shown = pieces = 0
        previous: dict[str, Any] | None = None
        for event in events:
            seq = event["seq"]
            problem = None
            starts = previous is None or (self._at_checkpoint(previous) and seq > previous["seq"] + 1)
            pieces += starts
            if event_hash(event["prev_hash"], event) != event["hash"]:
                problem = f"event {seq}: its hash does not match its content (the event was changed)"
            elif previous is not None and starts and self.heads.get(seq - 1) != event["prev_hash"]:
                problem = (f"event {seq}: a piece of the segment starts here without linking to a checkpoint at "
                           f"event {seq - 1} (events between the pieces could be missing)")
            elif previous is not None and not starts and event["prev_hash"] != previous["hash"]:
                problem = (f"event {seq}: its link to event {previous['seq']} does not match "
                           "(the chain was altered here)")
            if previous is not None and not starts and seq != previous["seq"] + 1:
                missing = (f"event {previous['seq'] + 1}" if seq == previous["seq"] + 2
                           else f"events {previous['seq'] + 1} to {seq - 1}")
                problem = f"event {seq} follows event {previous['seq']}: {missing} missing from the segment"
            if problem:
                self.failures += 1
                if shown < SHOWN_FAILURES:
                    self.lines.append(f"FAILED  {problem}")
                shown += 1
            self.segment[seq] = event
            previous = event
        cp = getattr(self, "checkpoint", None)
        last = events[-1]
        if cp is None:
            raise Failed(f"{SEGMENT}: no valid checkpoint to end at")
        if last["seq"] != cp["seq"] or last["hash"] != cp["head_hash"]:
            raise Failed(f"{SEGMENT}: it ends at event {last['seq']} (hash {last['hash'][:16]}…), not at the "
                         f"checkpoint's event {cp['seq']} (hash {cp['head_hash'][:16]}…)")
        if not shown:
            stretch = f"in {pieces} pieces, each ending at a checkpoint" if pieces > 1 else "ending at the checkpoint"
            self.proved(f"chain: events {events[0]['seq']} to {last['seq']} ({len(events)}, {stretch}): every hash "
                        "recomputed from its content and the hash before it, every link holds")

    def check_events(self) -> None:
        events = self.json_file(EVENTS)
        bad = 0
        for event in events:
            if self.segment.get(event["seq"]) != event:
                bad += 1
                if bad <= SHOWN_FAILURES:
                    self.failed(f"{EVENTS}: event {event['seq']} is not the chain's event {event['seq']}")
        if not bad and events:
            self.proved(f"{self.manifest.get('subject')}: its {len(events)} audit events (and its kits' and vials') "
                        f"are in the chain as it stood at the checkpoint, unchanged")

    def check_signatures(self) -> None:
        sigs = self.json_file(SIGNATURES)
        blinded = self.manifest.get("kind") == "blinded_lot"
        events = self.json_file(EVENTS)
        signed_events = {e["new_value"]: e for e in events if e["action"] == "signed"}
        bad = voided = 0
        for sig in sigs:
            where = f"signature #{sig['id']} ({sig['meaning']} by {sig['signer_name']} on {sig['entity_type']} " \
                    f"{sig['entity_id']})"
            problem = self._signature_problem(sig, signed_events, blinded)
            if problem:
                bad += 1
                if bad <= SHOWN_FAILURES:
                    self.failed(f"{where}: {problem}")
            voided += sig.get("invalidated_at") is not None
        named = {f"#{s['id']} {s['record_hash']}" for s in sigs}
        for value, event in signed_events.items():
            if value not in named:
                bad += 1
                self.failed(f"a 'signed' event on {event['entity_type']} {event['entity_id']} ({value.split()[0]}) "
                            "has no signature in the packet")
        if not bad:
            where = "'signed' event in the chain segment" if not blinded else "'signed' event among the packet's events"
            self.proved(f"signatures: {len(sigs)} ({voided} voided since): each one's content matches its content "
                        f"hash, its record matches its record hash, and its {where} names it")

    def _signature_problem(self, sig: dict[str, Any], signed_events: dict[str, dict[str, Any]],
                           blinded: bool) -> str | None:
        if sha256(sig["content"]) != sig["content_hash"]:
            return "its content does not match its content hash (the signed content was changed)"
        if record_hash(sig) != sig["record_hash"]:
            return "its record does not match its record hash (signer, time, meaning or subject was changed)"
        mark = f"#{sig['id']} {sig['record_hash']}"
        event = signed_events.get(mark) if blinded else self.segment.get(sig.get("audit_seq") or -1)
        if event is None or event["action"] != "signed" or event["new_value"] != mark:
            return "its 'signed' event is not in the packet's chain" if not blinded else \
                "its 'signed' event is not among the packet's events"
        if (event["entity_type"], event["entity_id"]) != (sig["entity_type"], sig["entity_id"]):
            return f"its 'signed' event is about {event['entity_type']} {event['entity_id']}, not what it signs"
        if blinded:
            return None
        voids = [e for e in self.segment.values() if e["action"] == "signature invalidated"
                 and e["old_value"] == f"#{sig['id']}" and e["entity_id"] == sig["entity_id"]]
        if voids and sig.get("invalidated_at") is None:
            return f"event {voids[0]['seq']} voided it, but its record says it stands"
        if not voids and sig.get("invalidated_at") is not None:
            return "its record says it was voided, but no 'signature invalidated' event in the chain says so"
        return None

    def say_what_lot_does_not_prove(self) -> None:
        self.not_proved("that the PDFs and CSV files say what the JSON records say: they are cellbench's renderings, "
                        "covered by the packet's signature only")
        self.not_proved("that the chain was not rewritten before the checkpoint was signed: compare the checkpoint "
                        "with one you hold from earlier (a backup's, a certificate's) or ask for `cellbench verify`")

    def say_what_blinded_does_not_prove(self) -> None:
        self.not_proved("that these events are in cellbench's hash chain: a blinded packet holds no sequence "
                        "numbers or chain hashes (they would show where events you may not see lie between "
                        "these); cellbench's own `verify`, or an unblinded packet, proves the chain")
        self.not_proved("that nothing about these kits is left out: the packet holds what your roles may read")


def main(argv: list[str]) -> int:
    args = list(argv)
    pinned = None
    for option in ("--key-id", "--key"):
        if option in args:
            at = args.index(option)
            if at + 1 >= len(args):
                print(f"{option} needs a value", file=sys.stderr)
                return 2
            value = args.pop(at + 1)
            args.pop(at)
            if option == "--key":
                try:
                    value = key_id_of(base64.b64decode(value, validate=True))
                except ValueError:
                    print("--key: not 44 characters of base64", file=sys.stderr)
                    return 2
            pinned = value.strip()
    path = Path(args[0]) if args else Path(__file__).resolve().parent
    try:
        files = read_packet(path)
    except (OSError, zipfile.BadZipFile) as exc:
        print(f"FAILED  cannot read the packet at {path}: {exc}")
        return 1
    verifier = Verifier(files, pinned)
    ok = verifier.run()
    subject = verifier.manifest.get("subject", "?")
    print(f"cellbench evidence packet: {verifier.manifest.get('kind', '?')} {subject}")
    print("\n".join(verifier.lines))
    print(f"RESULT  {'every check held' if ok else f'{verifier.failures} check(s) FAILED: do not rely on this packet'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
