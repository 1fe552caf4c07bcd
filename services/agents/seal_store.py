"""A verifier's record of its sealed verdicts (``protocol.forced_errors``), kept on disk.

A seal must be opened after the window with its segment, salt and evidence, and its game is
played from the segment's pre-state. The solver owes nobody that data after the window, so a
verifier that restarts in between must not depend on it: what a seal hides and the pre-state
it re-executed are written here when it seals (atomically: a temporary file, then a rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from protocol.state_commitment import blob_has_root, blob_root
from services.errors import SealStoreError


class SealStore:
    """``root/seals.json`` (seal hex -> record) and ``root/blobs/<state root>`` (pre-states)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._seals: dict[str, dict[str, Any]] = {}
        if root is not None:
            path = root / "seals.json"
            try:
                (root / "blobs").mkdir(parents=True, exist_ok=True)
                if path.exists():
                    self._seals = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SealStoreError(f"cannot use {root} for sealed verdicts: {exc}") from exc
            if not isinstance(self._seals, dict):
                raise SealStoreError(f"{path} is not a record of sealed verdicts")

    def put_seal(
        self, seal: bytes, job_id: str, segment: int, salt: bytes, body: dict[str, Any] | None
    ) -> None:
        record = {"job_id": job_id, "segment": segment, "salt": salt.hex(), "body": body}
        self._seals[seal.hex()] = record
        if self.root is not None:
            self._write(self.root / "seals.json", json.dumps(self._seals).encode("utf-8"))

    def seals_of(self, job_id: str) -> dict[bytes, tuple[int, bytes, dict[str, Any] | None]]:
        return {
            bytes.fromhex(seal): (r["segment"], bytes.fromhex(r["salt"]), r["body"])
            for seal, r in self._seals.items()
            if r["job_id"] == job_id
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
