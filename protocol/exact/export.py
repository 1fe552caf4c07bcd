"""A trained exact state as a float PyTorch model.

An exact state (what ``proofnet download`` and ``proofnet train --out`` write) holds int64
Q16 tensors — value = integer / 2^16 — under the exact VM's names, with the optimizer's
buffers (``momentum.*``, ``adam_m.*``, ``adam_v.*``) and the ``step`` counter beside the
parameters. Inference needs neither the buffers nor the counter, and wants floats in the layout
PyTorch's own layers use. ``float_state_dict`` gives exactly that: the ``state_dict()`` of the
family's float32 ``nn.Module`` (the one native mode trains, ``Family.native_module``) holding
the state's parameters, dequantized; dense weights become ``nn.Linear``'s (out, in).

Loading one::

    from protocol.exact.export import load_float_model

    module, spec = load_float_model("model-float.safetensors")  # an nn.Module in eval mode
    logits = module(x)

or, without ProofNet's loader, from the spec alone::

    from safetensors.torch import load_file
    from protocol.exact.export import float_module

    module = float_module(spec)                # the architecture, weights zero
    module.load_state_dict(load_file("model-float.safetensors"))

What the module takes: for ``mlp``, float features (N, input_dim); for ``cnn``, images
(N, C, H, W); both are the dataset's Q16 features divided by 2^16 (``dataset_tensors``
gives them), and the module returns class logits. For ``transformer``, int64 token ids
(N, T <= context) and next-token logits (N, T, vocab). The float module's predictions are
the exact model's up to rounding: ``tests/protocol/test_export.py`` checks they agree on the
test set.

The file written here is a safetensors file whose metadata holds the spec (``spec``, canonical
JSON) so a loader can rebuild the architecture; ``format`` is ``proofnet-float``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protocol.errors import ExportError, ProofNetError
from protocol.exact.family import family_of
from protocol.exact.program import check_state, params_of
from protocol.exact.state import State, export_safetensors
from protocol.hashing import BLOB_MAGIC
from protocol.spec import JobSpec, parse_spec

FLOAT_FORMAT = "proofnet-float"
EXACT_FORMAT = "proofnet-exact"
EXPORT_FORMATS = ("safetensors", "pt")


def float_module(spec: JobSpec) -> torch.nn.Module:
    """The family's float32 ``nn.Module`` for ``spec`` with zero weights, in eval mode:
    the architecture a float state dict loads into."""
    zeros = {
        name: torch.zeros(shape, dtype=torch.int64)
        for name, shape in spec.model.param_shapes().items()
    }
    return family_of(spec).native_module(spec, zeros).eval()


def float_state_dict(spec: JobSpec, state: State) -> dict[str, torch.Tensor]:
    """The float32 ``state_dict`` of ``float_module(spec)`` holding ``state``'s parameters
    (Q16 -> float by / 2^16); the optimizer buffers and step counter are left out."""
    check_state(spec, state)
    cpu = {name: tensor.detach().to("cpu") for name, tensor in params_of(spec, state).items()}
    module = family_of(spec).native_module(spec, cpu)
    return {name: t.detach().contiguous() for name, t in module.state_dict().items()}


def exact_state_file(spec: JobSpec, state: State, metadata: dict[str, str] | None = None) -> bytes:
    """The exact state as safetensors (int64 Q16) with the spec in its metadata, so
    ``read_exact_state`` (and ``proofnet export``) need nothing else."""
    return export_safetensors(state, {"spec": _spec_json(spec), **(metadata or {})})


def float_state_file(spec: JobSpec, state: State, metadata: dict[str, str] | None = None) -> bytes:
    """``float_state_dict`` as safetensors, the spec in its metadata (``load_float_model``)."""
    from safetensors.torch import save

    meta = {
        "format": FLOAT_FORMAT,
        "family": spec.model.family,
        "spec": _spec_json(spec),
        **(metadata or {}),
    }
    return save(float_state_dict(spec, state), metadata=meta)


def read_exact_state(data: bytes, spec: JobSpec | None = None) -> tuple[JobSpec, State]:
    """(spec, state) from an exact state file: safetensors (``download``'s default, ``train
    --out``) or the canonical state blob (``download --format state``).

    ``spec`` is needed when the file does not carry one (a canonical blob, or a safetensors
    file from before the spec was written into it); when both exist they must be the same.
    Raises ExportError for anything that is not a state of that spec."""
    spec, state, _ = _read_exact(data, spec)
    return spec, state


@dataclass(frozen=True)
class FloatExport:
    """What ``export_float`` wrote: the file's bytes, the spec, the parameter count, and the
    job status ``proofnet download`` recorded in the exact file (None if it did not)."""

    data: bytes
    spec: JobSpec
    parameters: int
    job_status: str | None


def export_float(
    data: bytes, spec: JobSpec | None = None, fmt: str = "safetensors", source: str = ""
) -> FloatExport:
    """An exact state file as a float model file: ``safetensors`` (``float_state_file``, the
    spec in its metadata) or ``pt`` (``torch.save`` of the bare state_dict)."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    spec, state, metadata = _read_exact(data, spec)
    floats = float_state_dict(spec, state)
    if fmt == "pt":
        buffer = io.BytesIO()
        torch.save(floats, buffer)
        written = buffer.getvalue()
    else:
        written = float_state_file(spec, state, {"source": source} if source else None)
    count = sum(int(t.numel()) for t in floats.values())
    return FloatExport(written, spec, count, metadata.get("job_status"))


def _read_exact(data: bytes, spec: JobSpec | None) -> tuple[JobSpec, State, dict[str, str]]:
    from protocol.exact.state import decode_state_for

    if data.startswith(BLOB_MAGIC):
        if spec is None:
            raise ExportError("a canonical state blob does not name its spec: pass --spec")
        try:
            return spec, decode_state_for(spec, data), {}
        except ProofNetError as exc:
            raise ExportError(f"not a state of this spec: {exc.message}") from exc
    tensors, metadata = _read_safetensors(data)
    if metadata.get("format") not in (None, EXACT_FORMAT):
        raise ExportError(f"the file is {metadata['format']!r}, not an exact state")
    spec = _the_spec(spec, metadata.get("spec"))
    try:
        check_state(spec, tensors)
    except ProofNetError as exc:
        raise ExportError(f"not a state of this spec: {exc.message}") from exc
    return spec, tensors, metadata


def load_float_model(path: str | Path) -> tuple[torch.nn.Module, JobSpec]:
    """The float module (eval mode) and its spec from a file ``float_state_file`` wrote."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata: dict[str, str] = handle.metadata() or {}
    if metadata.get("format") != FLOAT_FORMAT:
        raise ExportError(f"{path} is not a {FLOAT_FORMAT} file")
    spec = _the_spec(None, metadata.get("spec"))
    module = float_module(spec)
    module.load_state_dict(load_file(str(path)))
    return module, spec


def _spec_json(spec: JobSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


def _the_spec(given: JobSpec | None, embedded: str | None) -> JobSpec:
    """The spec to use: the given one, the file's, and they must agree when both exist."""
    if embedded is None:
        if given is None:
            raise ExportError("the file does not carry its spec: pass --spec")
        return given
    try:
        found = parse_spec(json.loads(embedded))
    except (ValueError, ProofNetError) as exc:
        raise ExportError(f"the spec in the file's metadata is not valid: {exc}") from exc
    if given is not None and given != found:
        raise ExportError("the file holds a state of another spec than --spec")
    return found


def _read_safetensors(data: bytes) -> tuple[State, dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
    except (SafetensorError, ValueError) as exc:
        raise ExportError(f"neither a state blob nor a safetensors file: {exc}") from exc
    metadata = header.get("__metadata__") or {}
    return dict(tensors), dict(metadata)
