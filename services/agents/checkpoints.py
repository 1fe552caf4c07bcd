"""The solver's checkpoint store: blobs addressed by state hash, plus per-job progress.

On disk (``--data-dir``) every write is atomic (write to a temporary file, fsync, rename), so a
solver killed at any point restarts from its last stored checkpoint and loses nothing it had
committed on chain. Without a directory the store lives in memory (in-process simulations).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from protocol.state_commitment import blob_has_root, blob_root


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CheckpointStore:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self._blobs: dict[bytes, bytes] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        if self.root is not None:
            (self.root / "blobs").mkdir(parents=True, exist_ok=True)
            (self.root / "jobs").mkdir(parents=True, exist_ok=True)

    # --- blobs ----------------------------------------------------------------------------
    def put_blob(self, blob: bytes, root: bytes | None = None) -> bytes:
        """Store a state blob; returns its address, the root of the state it encodes
        (``protocol.state_commitment``): ``root`` when the caller computed it with the blob,
        else computed here (EncodingError for bytes that are not a state blob)."""
        digest = blob_root(blob) if root is None else root
        if self.root is None:
            self._blobs[digest] = blob
        else:
            path = self.root / "blobs" / f"{digest.hex()}.bin"
            if not path.exists():
                _atomic_write(path, blob)
        return digest

    def get_blob(self, digest: bytes) -> bytes | None:
        if self.root is None:
            return self._blobs.get(digest)
        path = self.root / "blobs" / f"{digest.hex()}.bin"
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        return blob if blob_has_root(blob, digest) else None  # never serve a corrupt file

    # --- per-job progress -----------------------------------------------------------------
    def save_job(self, job_id: str, record: dict[str, Any]) -> None:
        if self.root is None:
            self._jobs[job_id] = json.loads(json.dumps(record))
            return
        data = json.dumps(record, sort_keys=True).encode()
        _atomic_write(self.root / "jobs" / f"{job_id}.json", data)

    def load_job(self, job_id: str) -> dict[str, Any] | None:
        if self.root is None:
            record = self._jobs.get(job_id)
            return json.loads(json.dumps(record)) if record is not None else None
        path = self.root / "jobs" / f"{job_id}.json"
        try:
            loaded: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return loaded

    def job_ids(self) -> list[str]:
        if self.root is None:
            return sorted(self._jobs)
        return sorted(p.stem for p in (self.root / "jobs").glob("*.json"))
