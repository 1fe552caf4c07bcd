"""A verifier's record of its sealed verdicts (``protocol.forced_errors``), kept on disk.

A seal must be opened after the window with its segment, salt and evidence, and its game is
played from the segment's pre-state. The solver owes nobody that data after the window, so a
verifier that restarts in between must not depend on it: what a seal hides and the pre-state
it re-executed are written here when it seals (atomically: a temporary file, then a rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts_sim.codec import to_json_value
from contracts_sim.transactions import SegmentEvidence
from protocol.state_commitment import blob_has_root, blob_root
from services.agents.views import decode_record
from services.errors import MalformedAnswerError, SealStoreError


@dataclass(frozen=True)
class Seal:
    """What one seal hides: its segment, its salt and, unless it is empty, the evidence."""

    segment: int
    salt: bytes
    evidence: SegmentEvidence | None


@dataclass(frozen=True)
class _Record:
    job_id: str
    segment: int
    salt: bytes
    body: SegmentEvidence | None


@dataclass(frozen=True)
class _Stored:
    """A record as read back, its evidence still JSON (an older version's also held the
    challenge's ``job_id``; ``decode_record`` drops it)."""

    job_id: str
    segment: int
    salt: bytes
    body: dict[str, Any] | None


def _decode(record: Any, where: str) -> _Record:
    """A record as written by ``put_seal``."""
    try:
        stored = decode_record(_Stored, record, where)
        body = None if stored.body is None else decode_record(SegmentEvidence, stored.body, where)
    except MalformedAnswerError as exc:
        raise SealStoreError(f"not a sealed verdict: {exc.message}") from exc
    return _Record(stored.job_id, stored.segment, stored.salt, body)


class SealStore:
    """``root/seals.json`` (seal hex -> record) and ``root/blobs/<state root>`` (pre-states)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._seals: dict[str, _Record] = {}
        if root is not None:
            path = root / "seals.json"
            stored: Any = {}
            try:
                (root / "blobs").mkdir(parents=True, exist_ok=True)
                if path.exists():
                    stored = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SealStoreError(f"cannot use {root} for sealed verdicts: {exc}") from exc
            if not isinstance(stored, dict):
                raise SealStoreError(f"{path} is not a record of sealed verdicts")
            self._seals = {seal: _decode(r, f"{path}: {seal}") for seal, r in stored.items()}

    def put_seal(
        self, seal: bytes, job_id: str, segment: int, salt: bytes, body: SegmentEvidence | None
    ) -> None:
        self._seals[seal.hex()] = _Record(job_id, segment, salt, body)
        if self.root is not None:
            records = {k: to_json_value(r) for k, r in self._seals.items()}
            self._write(self.root / "seals.json", json.dumps(records).encode("utf-8"))

    def seals_of(self, job_id: str) -> dict[bytes, Seal]:
        return {
            bytes.fromhex(seal): Seal(r.segment, r.salt, r.body)
            for seal, r in self._seals.items()
            if r.job_id == job_id
        }

    def put_blob(self, blob: bytes) -> None:
        if self.root is not None:
            path = self.root / "blobs" / blob_root(blob).hex()
            if not path.exists():
                self._write(path, blob)

    def get_blob(self, entry: bytes) -> bytes | None:
        if self.root is None:
            return None
        path = self.root / "blobs" / entry.hex()
        if not path.exists():
            return None
        blob = path.read_bytes()
        return blob if blob_has_root(blob, entry) else None

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
