"""Device selection, the process's settings for exact training, and the start-up
bit-exactness self-test.

Exact mode forbids TF32, autocast and ``torch.compile`` and checks, once per process and device,
that a fixed integer matmul near the 2^53 bound hashes to the known digest. A device or BLAS
that does not compute exactly fails here instead of getting an honest solver slashed.
"""

from __future__ import annotations

import hashlib

import torch

from protocol.errors import ExactExecutionError, SelfTestError
from protocol.exact.fixedpoint import ExactMatmul, retain_freed_memory
from protocol.randomness import random_below

SELFTEST_DIGEST = "de9d0d50c4681456e7d95bc6ec9c6f1ecf69add5b49644fa2292b01282632494"
_PASSED: set[str] = set()


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ExactExecutionError("--device cuda requested but no CUDA device is available")
        return torch.device(name)
    raise ExactExecutionError(f"unknown device {name!r} (use auto, cpu or cuda)")


def selftest_product(device: torch.device) -> torch.Tensor:
    """A fixed 96x512 @ 512x80 integer matmul with |a|,|b| < 2^21: bound 2^51 < 2^53."""
    limit = (1 << 21) - 1
    a = torch.tensor(random_below("selftest", 0, "a", count=96 * 512, bound=2 * limit + 1))
    b = torch.tensor(random_below("selftest", 0, "b", count=512 * 80, bound=2 * limit + 1))
    a = (a - limit).reshape(96, 512).to(device)
    b = (b - limit).reshape(512, 80).to(device)
    matmul = ExactMatmul()
    product = matmul(a, b, "selftest")
    matmul.check()
    return product


def selftest_digest(device: torch.device) -> str:
    product = selftest_product(device).to("cpu").contiguous()
    return hashlib.sha256(product.numpy().astype("<i8").tobytes()).hexdigest()


def prepare_exact(device: torch.device) -> None:
    """Disable inexact fast paths and run the self-test once for ``device``."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    retain_freed_memory()  # speed only: a pure step's fresh buffers reuse mapped pages
    key = str(device)
    if key in _PASSED:
        return
    digest = selftest_digest(device)
    if digest != SELFTEST_DIGEST:
        raise SelfTestError(
            f"device {key} failed the exactness self-test: matmul digest {digest} != "
            f"{SELFTEST_DIGEST}; exact training on this device would not match other machines"
        )
    _PASSED.add(key)


Device = torch.device


def set_threads(threads: int) -> None:
    """Set torch's CPU thread count (exact results do not depend on it; speed does)."""
    torch.set_num_threads(threads)


def get_threads() -> int:
    return torch.get_num_threads()


def as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)
