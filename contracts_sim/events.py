"""Events: what a transaction did, in JSON-safe form (for receipts, logs and streams).

``apply_transaction`` returns the list of events its ``process_*`` function emitted; a rejected
transaction emits nothing. ``data`` holds only JSON values (bytes as hex, enums as strings).
The kinds are listed in ``docs/ledger.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from contracts_sim.codec import to_json_value


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "data": self.data}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        return cls(str(raw["kind"]), dict(raw["data"]))


_PLAIN_VALUES: Final = frozenset({str, int, bool, type(None)})


def make_event(kind: str, **data: Any) -> Event:
    """An event whose values are converted to JSON (bytes → hex, tuples → lists). Data made
    only of strings, integers, booleans and nulls (a transfer's) is JSON already and is kept
    as it is: the exact type test sends an enum or a bytes value to ``to_json_value``."""
    if all(type(value) in _PLAIN_VALUES for value in data.values()):
        return Event(kind, data)
    return Event(kind, to_json_value(data))
