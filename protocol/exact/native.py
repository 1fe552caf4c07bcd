"""Native mode: the same MLP in plain float32 PyTorch — the speed and accuracy baseline.

Same initial weights (dequantized), same batches, same optimizer and hyperparameters (SGD with
momentum, or AdamW with the same betas, epsilon and decay); autograd and ``torch.optim.SGD`` /
``torch.optim.AdamW`` instead of fixed point. Its bits depend on the device and the
thread count, so native runs are for trusted use and benchmarks, never for commitments that
someone else must reproduce.
"""

from __future__ import annotations

import torch

from protocol.exact.fixedpoint import ONE
from protocol.exact.mlp import dataset_tensors, init
from protocol.exact.state import State
from protocol.layout import (
    STEP_KEY,
    adam_m_name,
    adam_v_name,
    bias_name,
    momentum_name,
    param_names,
    weight_name,
)
from protocol.randomness import batch_indices
from protocol.spec import JobSpec


class NativeTrainer:
    """Float32 training of ``spec`` with autograd; ``state()`` exports a float32 State."""

    def __init__(self, spec: JobSpec, device: str | torch.device = "cpu") -> None:
        self.spec = spec
        self.device = torch.device(device)
        exact0 = init(spec, self.device)
        self.params = {
            name: (exact0[name].to(torch.float32) / ONE).requires_grad_(True)
            for name in param_names(spec)
        }
        opt = spec.optimizer
        self.optimizer: torch.optim.Optimizer
        if opt.name == "adamw":
            self.optimizer = torch.optim.AdamW(
                list(self.params.values()),
                lr=2.0**opt.lr_log2,
                betas=(opt.beta1_q16 / ONE, opt.beta2_q16 / ONE),
                eps=2.0**opt.eps_log2,
                weight_decay=(0.0 if opt.weight_decay_log2 is None else 2.0**opt.weight_decay_log2),
            )
        else:
            self.optimizer = torch.optim.SGD(
                list(self.params.values()),
                lr=2.0**opt.lr_log2,
                momentum=opt.momentum_q16 / ONE,
            )
        train_x, train_y, test_x, test_y = dataset_tensors(spec, self.device)
        self.train_x = train_x.to(torch.float32) / ONE
        self.train_y = train_y
        self.test_x = test_x.to(torch.float32) / ONE
        self.test_y = test_y
        self.step_count = 0

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        layers = len(self.spec.model.layer_sizes()) - 1
        for layer in range(layers):
            x = x @ self.params[weight_name(layer)] + self.params[bias_name(layer)]
            if layer < layers - 1:
                x = torch.relu(x)
        return x

    def step(self) -> None:
        index = torch.tensor(
            batch_indices(
                self.spec.seed, self.step_count, self.spec.batch_size, self.train_x.shape[0]
            ),
            device=self.device,
        )
        loss = torch.nn.functional.cross_entropy(
            self._logits(self.train_x[index]), self.train_y[index]
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.step_count += 1

    def evaluate(self) -> float:
        with torch.no_grad():
            predicted = self._logits(self.test_x).argmax(dim=1)
        return float((predicted == self.test_y).float().mean().item())

    def state(self) -> State:
        state: State = {
            STEP_KEY: torch.tensor(self.step_count, dtype=torch.int64, device=self.device)
        }
        if self.spec.optimizer.name == "adamw":
            buffers = {"exp_avg": adam_m_name, "exp_avg_sq": adam_v_name}
        else:
            buffers = {"momentum_buffer": momentum_name}
        for name, param in self.params.items():
            state[name] = param.detach().clone()
            for key, buffer_name in buffers.items():
                buf = self.optimizer.state.get(param, {}).get(key)
                state[buffer_name(name)] = (
                    buf.detach().clone() if buf is not None else torch.zeros_like(param.detach())
                )
        return state
