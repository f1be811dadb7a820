"""The README.txt of each packet: what is in it, how to check it, and exactly what that proves."""
from __future__ import annotations

CHECK = """HOW TO CHECK IT
  Python 3.10 or later with the `cryptography` package (pip install cryptography), then, in this folder:
      python verify_packet.py --key-id KEY_ID
  KEY_ID is the checkpoint key's id as the manufacturer gave it to you by another way (on paper, or
  from `cellbench keys public` run in front of you). Without --key-id the verifier checks against the
  key inside the packet and prints its id for you to compare. Read verify_packet.py: it is short and
  uses nothing of cellbench. It prints one line per check, OK or FAILED, and exits 0 only if every
  check held. Better still, keep your own copy of verify_packet.py and run that one.
"""


def lot_readme(number: str, *, first_seq: int, last_seq: int, pieces: int, events: int, kits: int, with_coa: bool,
               with_release: bool) -> str:
    coa = (f"certificate-of-analysis-{number}.pdf   the certificate of analysis" if with_coa
           else "(no certificate of analysis: the lot has no QC result yet)")
    release = (f"release-certificate-{number}.pdf       the release certificate" if with_release
               else "(no release certificate: the lot has no certification or release yet)")
    stretch = f", in {pieces} pieces (below)" if pieces > 1 else ", every event between"
    ends = "; the others end or precede the segment's pieces" if pieces > 1 else ""
    return f"""EVIDENCE PACKET OF LOT {number}
Issued by cellbench for an unblinded requester (QA or QP). It holds unblinded records: which kits
were filled from this lot, and other records' events in the audit chain (below). Do not hand it to
anyone who must stay blinded in the trial; the sites have the blinded lot's packet.

WHAT IS IN IT
  batch-record-{number}.pdf       the executed batch record, as printed by cellbench
  {coa}
  {release}
  lot.json                         the lot, its vials and the {kits} kits filled from it
  qc-results.json / .csv           every QC result of the lot (retests and invalidated ones too)
  deviations.json / .csv           the deviations of the lot and of its kits
  audit/events.json / .csv         the {events} audit events of the lot, its vials and its kits
                                   (the CSV shows times in the site's zone; a cell that would run as a
                                   spreadsheet formula starts with a ')
  signatures.json                  every signature on those records, with the exact content signed
  chain/segment.json               the audit chain from event {first_seq} (the first of the lot's or its kits')
                                   to event {last_seq}{stretch}
  checkpoints.json                 the signed checkpoints: the last says the chain ended at event {last_seq}
                                   with that hash{ends}
  public_key.txt                   the checkpoint key's public half (Ed25519)
  MANIFEST.json, MANIFEST.sig      the SHA-256 of every file, and cellbench's signature over the manifest
  verify_packet.py                 the verifier

WHAT THE CHAIN SEGMENT CONTAINS, AND WHY
  cellbench keeps one audit chain for everything: each event's hash covers the previous event's hash
  and the event's content. The lot's events lie between those of other lots, kits, shipments and
  the sealed randomisation compartment. To prove the lot's events without trusting anyone, every
  event from the lot's first to a signed checkpoint must be recomputed, so the segment holds all of
  them, with their full content: an event given only by its hash could hide any content before it.
  That makes the packet larger than the lot alone (on the demo, about 6,500 events and 0.7 MB
  zipped for a released lot whose kits were used), and unblinded. Where cellbench kept signed
  checkpoints in between, the segment may come in pieces: each piece ends at a signed checkpoint and
  each later piece starts right after one, linked to its hash, so nothing is missing within them.

{CHECK}
WHAT A PASSING CHECK PROVES
  - Every file is the one cellbench put in this packet, signed with the checkpoint key when it was
    built (the key lives outside cellbench's database: the database's owner cannot sign).
  - The checkpoint was signed with that key: at its time, the audit chain ended at event {last_seq}.
  - Every event of the segment hashes to its recorded hash and links to the one before, and each
    piece ends at a signed checkpoint: none of them was changed, removed or inserted since.
  - Each of the lot's events in audit/events.json is that event of the chain.
  - Each signature's content hashes to its content hash and its record to its record hash, and the
    chain's "signed" event names that record; a voiding is an event in the chain too.

WHAT IT DOES NOT PROVE
  - That the PDFs and the CSV say what the records say: they are cellbench's renderings, covered by
    the packet's signature only (compare them with the JSON, which the chain proves).
  - That the chain before event {first_seq} is intact, or that the database was not rewritten before
    this checkpoint was signed: compare this checkpoint with an earlier one you hold (a backup's, a
    certificate's) or ask for `cellbench verify`, which checks the whole chain against every checkpoint.
  - That the lot's current state in the database matches its events (`cellbench verify` replays it).
"""


def blinded_readme(code: str, *, events: int, kits: int, signatures: int) -> str:
    return f"""EVIDENCE PACKET OF BLINDED LOT {code}
Issued by cellbench for the trial site: it holds only what blinded roles may read. It names no
arm, no manufacturing lot, no vial, and no event a blinded role may not see.

WHAT IS IN IT
  blinded-lot.json                 the blinded lot and its {kits} kits as your roles see them
  audit/events.json / .csv         the {events} audit events of the blinded lot and its kits that your roles
                                   may read (the blinded audit view; CSV times in the site's zone)
  signatures.json                  the {signatures} signatures those events name, with the content signed
  public_key.txt                   the checkpoint key's public half (Ed25519)
  MANIFEST.json, MANIFEST.sig      the SHA-256 of every file, and cellbench's signature over the manifest
  verify_packet.py                 the verifier (the same as in every cellbench packet)

{CHECK}
WHAT A PASSING CHECK PROVES
  - Every file is the one cellbench put in this packet, unchanged, signed with the checkpoint key
    when it was built (the key lives outside cellbench's database: its owner cannot sign).
  - Each signature's content hashes to its content hash and its record to its record hash, and one
    of the packet's "signed" events names that record.

WHAT IT DOES NOT PROVE, AND WHY
  - That these events are in cellbench's audit chain, unchanged. The chain holds every record's
    events in one line; proving a link needs every event between, and those include the sealed
    compartment's and other records' events that a blinded role may not read. Even the sequence
    numbers and hashes of your own events would show how many such events lie between them (a hash
    with a known predecessor can be tried against every sequence number), so the packet holds none.
    The packet's signature says only that cellbench, holding the key, issued these events at that
    time. The proof of the chain is `cellbench verify` run by the manufacturer, or an unblinded
    packet of the same records checked by someone who may see them.
  - That nothing about these kits is left out: the packet holds what your roles may read.
  - Anything about what the kits contain: that stays sealed until the study is unblinded.
"""
