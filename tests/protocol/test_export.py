"""``proofnet export``: an exact state as a float PyTorch model with the exact model's
predictions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from protocol.errors import ExportError, ProofNetError
from protocol.exact import encode_state, init, run
from protocol.exact.data import dataset_tensors
from protocol.exact.export import (
    exact_state_file,
    export_float,
    float_module,
    float_state_dict,
    load_float_model,
    read_exact_state,
)
from protocol.exact.family import family_of
from protocol.exact.fixedpoint import ONE
from protocol.exact.program import params_of
from protocol.exact.state import State, export_safetensors
from protocol.spec import JobSpec, parse_spec, with_steps
from services.cli import _register, app
from services.jobspec import load_spec
from tests.conftest import EXAMPLE_SPEC, tiny_spec_dict

_register()


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def trained(spec: JobSpec) -> State:
    return run(spec, init(spec), 0, spec.steps)


def exact_and_float_predictions(
    spec: JobSpec, state: State, module: torch.nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class predictions on the test split: the exact model's, the float module's."""
    _, _, test_x, _ = dataset_tensors(spec, torch.device("cpu"))
    exact = family_of(spec).predict(spec, params_of(spec, state), test_x)  # type: ignore[attr-defined]
    image = getattr(spec.model, "image", None)
    inputs = test_x.reshape(-1, *image) if image else test_x
    with torch.no_grad():
        floats = module(inputs.to(torch.float32) / ONE).argmax(dim=1)
    return exact, floats


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[JobSpec, State]:
    spec = with_steps(load_spec(EXAMPLE_SPEC)[0], 50)
    return spec, trained(spec)


def test_the_float_mlp_predicts_as_the_exact_one(
    digits_mlp: tuple[JobSpec, State], tmp_path: Path
) -> None:
    spec, state = digits_mlp
    path = tmp_path / "mlp-float.safetensors"
    path.write_bytes(export_float(exact_state_file(spec, state)).data)
    module, loaded_spec = load_float_model(path)
    assert loaded_spec == spec
    assert not module.training
    exact, floats = exact_and_float_predictions(spec, state, module)
    assert torch.equal(exact, floats)
    _, _, _, test_y = dataset_tensors(spec, torch.device("cpu"))
    assert (exact == test_y).float().mean().item() > 0.5  # a trained model, not a constant


@pytest.mark.slow
def test_the_float_cnn_predicts_as_the_exact_one(tmp_path: Path) -> None:
    spec = with_steps(load_spec(EXAMPLE_SPEC.parent / "digits-cnn.yaml")[0], 100)
    state = trained(spec)
    path = tmp_path / "cnn-float.safetensors"
    path.write_bytes(export_float(exact_state_file(spec, state)).data)
    module, _ = load_float_model(path)
    exact, floats = exact_and_float_predictions(spec, state, module)
    assert torch.equal(exact, floats)
    _, _, _, test_y = dataset_tensors(spec, torch.device("cpu"))
    assert (exact == test_y).float().mean().item() > 0.5


def test_the_state_dict_is_the_modules_own_and_leaves_the_optimizer_out(
    digits_mlp: tuple[JobSpec, State],
) -> None:
    spec, state = digits_mlp
    floats = float_state_dict(spec, state)
    assert set(floats) == {"0.weight", "0.bias", "2.weight", "2.bias"}  # nn.Sequential's
    assert all(t.dtype == torch.float32 for t in floats.values())
    # nn.Linear keeps (out, in); the exact state (in, out). Value = integer / 2^16.
    assert torch.equal(floats["0.weight"], state["layer0.weight"].T.to(torch.float32) / ONE)
    module = float_module(spec)
    module.load_state_dict(floats)  # strict: every key and shape matches


def test_pt_format_is_a_plain_state_dict(digits_mlp: tuple[JobSpec, State]) -> None:
    spec, state = digits_mlp
    exported = export_float(exact_state_file(spec, state), fmt="pt")
    loaded = torch.load(io.BytesIO(exported.data), weights_only=True)
    float_module(spec).load_state_dict(loaded)
    assert exported.parameters == 64 * 64 + 64 + 64 * 10 + 10


def test_every_exact_file_kind_is_read() -> None:
    """download's safetensors (with or without the spec in it) and the canonical blob."""
    spec = parse_spec(tiny_spec_dict(steps=4))
    state = trained(spec)
    with_spec = exact_state_file(spec, state)
    without_spec = export_safetensors(state)  # as download wrote before the spec was added
    blob = encode_state(state)
    for data, given in ((with_spec, None), (with_spec, spec), (without_spec, spec), (blob, spec)):
        found_spec, found = read_exact_state(data, given)
        assert found_spec == spec
        assert encode_state(found) == blob


def test_refusals_are_typed() -> None:
    spec = parse_spec(tiny_spec_dict(steps=4))
    other = parse_spec(tiny_spec_dict(steps=4, seed=9))
    state = trained(spec)
    cases = [
        (encode_state(state), None, "pass --spec"),
        (export_safetensors(state), None, "pass --spec"),
        (exact_state_file(spec, state), other, "another spec"),
        (b"not a model at all", spec, "neither a state blob nor a safetensors"),
        (export_float(exact_state_file(spec, state)).data, None, "not an exact state"),
    ]
    for data, given, message in cases:
        with pytest.raises(ExportError, match=message):
            read_exact_state(data, given)
    narrower = {"family": "mlp", "input_dim": 16, "hidden": [8], "classes": 4}
    with pytest.raises(ProofNetError, match="not a state of this spec"):
        read_exact_state(encode_state(state), parse_spec(tiny_spec_dict(model=narrower)))


def test_export_command(digits_mlp: tuple[JobSpec, State], tmp_path: Path) -> None:
    spec, state = digits_mlp
    model = tmp_path / "model.safetensors"
    model.write_bytes(exact_state_file(spec, state, {"job_status": "settled"}))
    result = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["export", str(model)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "model-float.safetensors"
    assert set(load_file(out)) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    text = flat(result.stdout)
    assert "holds the float32 state_dict of the mlp (4,810 parameters" in text
    assert "load it: module, spec = protocol.exact.export.load_float_model(" in text
    report = CliRunner().invoke(app, ["export", str(model), "--out", str(out), "--json"])
    assert json.loads(report.stdout)["out"] == str(out)


def test_export_warns_about_a_slashed_jobs_model(
    digits_mlp: tuple[JobSpec, State], tmp_path: Path
) -> None:
    spec, state = digits_mlp
    model = tmp_path / "cheat.safetensors"
    model.write_bytes(exact_state_file(spec, state, {"job_status": "slashed"}))
    result = CliRunner().invoke(app, ["export", str(model), "--json"])
    assert result.exit_code == 0
    warning = flat(result.stderr)
    assert "SLASHED, not settled" in warning and "NOT a verified training result" in warning


def test_export_command_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["export", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"junk")
    refused = runner.invoke(app, ["export", str(junk)])
    assert refused.exit_code == 2
    assert flat(refused.stderr).startswith("error: export_error: neither a state blob")
    assert "Traceback" not in refused.output


def test_a_canonical_blob_exports_with_its_spec_file(
    digits_mlp: tuple[JobSpec, State], tmp_path: Path
) -> None:
    """``download --format state`` writes the bare blob: export needs ``--spec``."""
    spec, state = digits_mlp
    blob = tmp_path / "model.state"
    blob.write_bytes(encode_state(state))
    runner = CliRunner(env={"COLUMNS": "80"})
    refused = runner.invoke(app, ["export", str(blob)])
    assert refused.exit_code == 2 and "pass --spec" in refused.stderr
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(json.dumps(spec.to_dict()))
    out = tmp_path / "model.pt"
    args = ["export", str(blob), "--spec", str(spec_file), "--format", "pt", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    float_module(spec).load_state_dict(torch.load(out, weights_only=True))


def test_the_transformer_exports_into_its_native_module() -> None:
    spec = parse_spec(
        {
            **load_spec(EXAMPLE_SPEC.parent / "text-transformer.yaml")[0].to_dict(),
            "model": {
                "family": "transformer",
                "vocab": 76,
                "context": 8,
                "d_model": 16,
                "heads": 2,
                "layers": 1,
                "ff": 32,
            },
        }
    )
    state = init(spec)
    module = float_module(spec)
    module.load_state_dict(float_state_dict(spec, state))
    same = family_of(spec).native_module(spec, params_of(spec, state))
    tokens = torch.arange(8).reshape(1, 8)
    with torch.no_grad():
        assert torch.equal(module(tokens), same.eval()(tokens))
