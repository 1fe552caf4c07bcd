"""Datasets ship with the package and are pinned by content hash."""

from __future__ import annotations

import pytest

from protocol.datasets import Dataset, check_dataset, load_dataset
from protocol.errors import DatasetError
from services.jobspec import load_spec
from tests.conftest import EXAMPLE_SPEC


def test_digits_shape_and_split() -> None:
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset)
    assert (len(ds.train_y), len(ds.test_y)) == (1438, 359)
    assert ds.num_features == 64 and ds.num_classes == 10
    assert set(ds.test_y) == set(range(10))


def test_example_spec_pins_the_shipped_digits() -> None:
    spec, _ = load_spec(EXAMPLE_SPEC)
    assert check_dataset("digits", spec.dataset.hash).content_hash_hex == spec.dataset.hash


def test_digits_match_scikit_learn() -> None:
    sklearn = pytest.importorskip("sklearn.datasets")
    reference = sklearn.load_digits()
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset)
    first_train = [int(v) >> 12 for v in ds.train_x[0]]
    assert first_train == [int(v) for v in reference.data[0]]
    assert ds.test_y[0] == int(reference.target[4])


def test_synthetic_sets_are_seeded() -> None:
    a = load_dataset("blobs-f8-c3-n100-s5")
    b = load_dataset("blobs-f8-c3-n100-s6")
    assert a.content_hash != b.content_hash
    load_dataset.cache_clear()
    assert load_dataset("blobs-f8-c3-n100-s5").content_hash == a.content_hash


@pytest.mark.parametrize("dataset_id", ["mnist", "blobs-f0-c3-n100-s1", "blobs-f8-c3-n1-s1"])
def test_unknown_or_invalid_dataset(dataset_id: str) -> None:
    with pytest.raises(DatasetError):
        load_dataset(dataset_id)


def test_hash_mismatch_is_an_error() -> None:
    with pytest.raises(DatasetError, match="does not match"):
        check_dataset("digits", "00" * 32)
