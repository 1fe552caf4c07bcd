"""Native mode: the same MLP in plain float32 PyTorch — the speed and accuracy baseline.

Same initial weights (dequantized), same batches, same SGD with momentum and learning rate;
autograd and ``torch.optim.SGD`` instead of fixed point. Its bits depend on the device and the
thread count, so native runs are for trusted use and benchmarks, never for commitments that
someone else must reproduce.
"""

from __future__ import annotations

import torch

from protocol.exact.fixedpoint import ONE
from protocol.exact.mlp import dataset_tensors, init
from protocol.exact.state import State
from protocol.layout import STEP_KEY, bias_name, param_names, weight_name
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
        self.optimizer = torch.optim.SGD(
            list(self.params.values()),
            lr=2.0**spec.optimizer.lr_log2,
            momentum=spec.optimizer.momentum_q16 / ONE,
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
        for name, param in self.params.items():
            state[name] = param.detach().clone()
            buf = self.optimizer.state.get(param, {}).get("momentum_buffer")
            state[f"momentum.{name}"] = (
                buf.detach().clone() if buf is not None else torch.zeros_like(param.detach())
            )
        return state
