"""Native mode: the same model in idiomatic float32 PyTorch — the speed and accuracy baseline.

The family's ``nn.Module`` with the same initial weights (dequantized), the same batches, and
``torch.optim.SGD`` / ``torch.optim.AdamW`` with the same hyperparameters; autograd instead of
fixed point. Its bits depend on the device and the thread count, so native runs are for
trusted use and benchmarks, never for commitments that someone else must reproduce.
"""

from __future__ import annotations

import torch

from protocol.exact.family import family_of
from protocol.exact.fixedpoint import ONE
from protocol.exact.program import init, params_of
from protocol.exact.state import State
from protocol.layout import STEP_KEY, adam_m_name, adam_v_name, momentum_name
from protocol.spec import JobSpec


def native_optimizer(spec: JobSpec, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``torch.optim`` with the spec's optimizer and hyperparameters."""
    opt = spec.optimizer
    if opt.name == "adamw":
        return torch.optim.AdamW(
            parameters,
            lr=2.0**opt.lr_log2,
            betas=(opt.beta1_q16 / ONE, opt.beta2_q16 / ONE),
            eps=2.0**opt.eps_log2,
            weight_decay=(0.0 if opt.weight_decay_log2 is None else 2.0**opt.weight_decay_log2),
        )
    return torch.optim.SGD(parameters, lr=2.0**opt.lr_log2, momentum=opt.momentum_q16 / ONE)


class NativeTrainer:
    """Float32 training of ``spec`` with autograd; ``state()`` exports a float32 State."""

    def __init__(self, spec: JobSpec, device: str | torch.device = "cpu") -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.family = family_of(spec)
        exact0 = init(spec, self.device)
        self.module = self.family.native_module(spec, params_of(spec, exact0)).to(self.device)
        self.params = self.family.native_parameters(self.module)
        self.optimizer = native_optimizer(spec, list(self.module.parameters()))
        # nn.Linear keeps its weight as (out, in); the exact state keeps (in, out).
        self._transposed = {
            id(m.weight) for m in self.module.modules() if isinstance(m, torch.nn.Linear)
        }
        self.step_count = 0

    def step(self) -> None:
        batch = self.family.batch(self.spec, self.step_count, self.device)
        loss = self.family.native_loss(self.spec, self.module, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.step_count += 1

    def evaluate(self) -> float:
        self.module.eval()
        try:
            return self.family.native_evaluate(self.spec, self.module)
        finally:
            self.module.train()

    def state(self) -> State:
        state: State = {
            STEP_KEY: torch.tensor(self.step_count, dtype=torch.int64, device=self.device)
        }
        if self.spec.optimizer.name == "adamw":
            buffers = {"exp_avg": adam_m_name, "exp_avg_sq": adam_v_name}
        else:
            buffers = {"momentum_buffer": momentum_name}
        for name, param in self.params.items():
            value = param.detach()
            flip = id(param) in self._transposed
            state[name] = value.T.clone() if flip else value.clone()
            for key, buffer_name in buffers.items():
                buf = self.optimizer.state.get(param, {}).get(key)
                tensor = buf.detach() if buf is not None else torch.zeros_like(value)
                state[buffer_name(name)] = tensor.T.clone() if flip else tensor.clone()
        return state
