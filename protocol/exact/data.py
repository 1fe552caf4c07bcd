"""Datasets as device tensors, checked against the spec's hash and shapes, cached per device."""

from __future__ import annotations

import functools

import torch

from protocol.datasets import Dataset, TextDataset, check_dataset
from protocol.errors import StateMismatchError
from protocol.exact.fixedpoint import Operand
from protocol.spec import JobSpec


@functools.lru_cache(maxsize=16)
def _classification_cpu(dataset_id: str, dataset_hash: str) -> tuple[torch.Tensor, ...]:
    ds = check_dataset(dataset_id, dataset_hash)
    if not isinstance(ds, Dataset):
        raise StateMismatchError(f"dataset {dataset_id!r} is a text corpus, not labelled examples")
    return (
        torch.tensor(ds.train_x, dtype=torch.int64),
        torch.tensor(ds.train_y, dtype=torch.int64),
        torch.tensor(ds.test_x, dtype=torch.int64),
        torch.tensor(ds.test_y, dtype=torch.int64),
    )


_DEVICE_DATA: dict[tuple[str, str, str], tuple[torch.Tensor, ...]] = {}


@functools.lru_cache(maxsize=16)
def _labels_needed(dataset_id: str, dataset_hash: str) -> int:
    return int(_classification_cpu(dataset_id, dataset_hash)[1].max().item()) + 1


def dataset_tensors(spec: JobSpec, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(train_x, train_y, test_x, test_y) on ``device`` for a classifier's spec, checked
    against the spec's hash, its input width and its classes — on every call: the cache is
    keyed by the dataset alone, and two specs may train on one dataset."""
    tensors = _classification_cpu(spec.dataset.id, spec.dataset.hash)
    features = getattr(spec.model, "input_features", None)
    classes = getattr(spec.model, "classes", None)
    if tensors[0].shape[1] != features:
        raise StateMismatchError(
            f"dataset {spec.dataset.id!r} has {tensors[0].shape[1]} features; "
            f"the model takes {features}"
        )
    if classes is None or _labels_needed(spec.dataset.id, spec.dataset.hash) > classes:
        raise StateMismatchError(f"dataset {spec.dataset.id!r} has more classes than model.classes")
    key = (spec.dataset.id, spec.dataset.hash, str(device))
    if key not in _DEVICE_DATA:
        _DEVICE_DATA[key] = tuple(t.to(device) for t in tensors)
    return _DEVICE_DATA[key]


def text_dataset(spec: JobSpec) -> TextDataset:
    """The spec's text corpus, checked against its hash and the model's vocabulary."""
    ds = check_dataset(spec.dataset.id, spec.dataset.hash)
    if not isinstance(ds, TextDataset):
        raise StateMismatchError(f"dataset {spec.dataset.id!r} is not a text corpus")
    vocab = getattr(spec.model, "vocab", None)
    if ds.vocab_size != vocab:
        raise StateMismatchError(
            f"dataset {spec.dataset.id!r} has {ds.vocab_size} characters; model.vocab is {vocab}"
        )
    return ds


_TEXT_DATA: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def text_tensors(spec: JobSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(train tokens, validation tokens) as int64 tensors on ``device``, the corpus checked
    against the spec (hash, vocabulary) on every call."""
    ds = text_dataset(spec)
    key = (spec.dataset.id, spec.dataset.hash, str(device))
    if key not in _TEXT_DATA:
        _TEXT_DATA[key] = (
            torch.frombuffer(bytearray(ds.train_tokens), dtype=torch.uint8)
            .to(torch.int64)
            .to(device),
            torch.frombuffer(bytearray(ds.validation_tokens), dtype=torch.uint8)
            .to(torch.int64)
            .to(device),
        )
    return _TEXT_DATA[key]


_CARRIED: dict[tuple[str, str, str], Operand] = {}


def carried_inputs(spec: JobSpec, device: torch.device) -> Operand:
    """The training inputs (N, features) carried in float64 with their max |value|, a bound
    for any batch: converted and reduced once per dataset and device instead of every step.

    Flat on purpose: the value depends on the dataset alone, which is all the cache key holds;
    a family reshapes its batch (a view) to its own input shape.
    """
    key = (spec.dataset.id, spec.dataset.hash, str(device))
    if key not in _CARRIED:
        _CARRIED[key] = Operand.of(dataset_tensors(spec, device)[0])
    return _CARRIED[key]
