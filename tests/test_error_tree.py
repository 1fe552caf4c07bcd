"""One error tree: every ProofNetError of protocol, contracts_sim and services is defined in an
exception module and has a ``code`` of its own, unique across the three packages (the node's
error bodies and the clients' retries read the code, so two meanings must never share one)."""

from __future__ import annotations

import importlib
import pkgutil
from collections import defaultdict

import pytest

from protocol.errors import ProofNetError

PACKAGES = ("protocol", "contracts_sim", "services")
EXCEPTION_MODULES = frozenset({"protocol.errors", "contracts_sim.exceptions", "services.errors"})
NOT_IMPORTED = ("__main__", "contracts_sim.migrations.env", "contracts_sim.migrations.versions")
"""Scripts (importing them runs them) and Alembic's migration environment and revisions."""


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if not any(part in info.name for part in NOT_IMPORTED):
                names.append(info.name)
    return names


def _error_classes() -> list[type[ProofNetError]]:
    for name in _modules():
        importlib.import_module(name)
    found: list[type[ProofNetError]] = []
    todo: list[type[ProofNetError]] = [ProofNetError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in dict.fromkeys(found) if c.__module__.split(".")[0] in PACKAGES]


@pytest.fixture(scope="module")
def errors() -> list[type[ProofNetError]]:
    return _error_classes()


def test_the_walk_sees_every_package(errors: list[type[ProofNetError]]) -> None:
    modules = {c.__module__ for c in errors}
    assert {"protocol.errors", "contracts_sim.exceptions"} <= modules
    assert len(errors) > 80


def test_every_error_class_is_defined_in_an_exception_module(
    errors: list[type[ProofNetError]],
) -> None:
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in errors)
    outside = [n for n in outside if n.rsplit(".", 1)[0] not in EXCEPTION_MODULES]
    assert outside == []


def test_every_error_class_has_a_code_of_its_own(errors: list[type[ProofNetError]]) -> None:
    inherited = sorted(c.__qualname__ for c in errors if "code" not in vars(c))
    assert inherited == []


def test_codes_are_unique(errors: list[type[ProofNetError]]) -> None:
    by_code: dict[str, list[str]] = defaultdict(list)
    for cls in errors:
        by_code[cls.code].append(f"{cls.__module__}.{cls.__qualname__}")
    shared = {code: sorted(names) for code, names in by_code.items() if len(names) > 1}
    assert shared == {}
