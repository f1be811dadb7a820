"""Evidence packets: everything about one lot in one archive that proves itself offline.

Parts: packet (the files, the manifest signed with the checkpoint key, the ZIP), readme (what each
packet says it proves), verify_packet (the standalone verifier copied into every packet: standard
library and `cryptography` only), site (the blinded lot's packet for the trial site), lot (the
manufacturing lot's packet for QA and the QP: `evidence.lot.build`).

This `__init__` names the blind-safe parts only: the lot's packet reads the sealed compartment (which
kits a lot filled), and a blinded route that imports this package must not reach it. Callers of
the lot's packet import `cellbench.evidence.lot` themselves.
"""
from __future__ import annotations

from . import site, verify_packet
from .packet import Built, NoCheckpointKey, Packet

__all__ = ["Built", "NoCheckpointKey", "Packet", "site", "verify_packet"]
