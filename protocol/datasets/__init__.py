"""Datasets, pinned by content hash.

* ``digits`` — the UCI 8×8 hand-written digits (1797 images, 10 classes), shipped in this package
  as ``digits.csv.gz`` (the copy scikit-learn bundles). Fixed split: every fifth image (index
  ≡ 4 mod 5) is test data, the rest is training data.
* ``shakespeare-char`` — a character-level text corpus of 1,273,727 characters: ten plays of
  Shakespeare from Project Gutenberg (public domain), shipped as ``shakespeare.txt.xz``; see
  ``shakespeare.SOURCE.md`` for where it comes from. Tokens are indices into the sorted set of
  its characters (76). Fixed split: the first 90 % of the characters train, the rest validate.
* ``synthetic-blobs-v1`` and ``blobs-f{F}-c{C}-n{N}-s{S}`` — seeded Gaussian-like clusters
  (F features, C classes, N examples of which a fifth are test data, seed S), generated from the
  counter-based hash, for fast tests.

Features are fixed-point integers with ``FEATURE_FRAC_BITS`` fractional bits (value 1.0 is
``1 << 16``); labels are class indices. The content hash covers the id, shape and every value,
so a spec's ``dataset.hash`` pins the exact bytes trained on. Reading a package resource is the
only I/O here; the data is immutable.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import lzma
import math
import re
import struct
from dataclasses import dataclass

from protocol.errors import DatasetError
from protocol.hashing import canonical_json, sha256
from protocol.randomness import random_below
from protocol.types import Hash32

FEATURE_FRAC_BITS = 16
_BLOBS_RE = re.compile(r"^blobs-f(\d+)-c(\d+)-n(\d+)-s(\d+)$")
_ALIASES = {"synthetic-blobs-v1": "blobs-f16-c4-n1280-s1"}
MAX_SYNTHETIC_EXAMPLES = 200_000


@dataclass(frozen=True)
class Dataset:
    id: str
    num_features: int
    num_classes: int
    train_x: tuple[tuple[int, ...], ...]
    train_y: tuple[int, ...]
    test_x: tuple[tuple[int, ...], ...]
    test_y: tuple[int, ...]
    content_hash: Hash32

    @property
    def content_hash_hex(self) -> str:
        return self.content_hash.hex()


@dataclass(frozen=True)
class TextDataset:
    """A token sequence for language modelling: token t is the character ``vocab[t]``."""

    id: str
    vocab: str
    train_tokens: bytes
    validation_tokens: bytes
    content_hash: Hash32

    @property
    def content_hash_hex(self) -> str:
        return self.content_hash.hex()

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> bytes:
        """Tokens of ``text``; DatasetError for a character outside the vocabulary."""
        index = {c: i for i, c in enumerate(self.vocab)}
        try:
            return bytes(index[c] for c in text)
        except KeyError as exc:
            raise DatasetError(
                f"character {exc.args[0]!r} is not in {self.id}'s vocabulary"
            ) from None

    def decode(self, tokens: bytes | list[int]) -> str:
        return "".join(self.vocab[t] for t in tokens)


def unigram_loss(dataset: TextDataset) -> float:
    """The baseline a language model must beat: the cross-entropy (nats per character) of the
    validation split under the training split's character frequencies (add-one smoothed)."""
    counts = [1] * dataset.vocab_size
    for token in dataset.train_tokens:
        counts[token] += 1
    total = sum(counts)
    seen = [0] * dataset.vocab_size
    for token in dataset.validation_tokens:
        seen[token] += 1
    nats = -sum(n * math.log(counts[t] / total) for t, n in enumerate(seen) if n)
    return nats / len(dataset.validation_tokens)


SHAKESPEARE_FILE = "shakespeare.txt.xz"
SHAKESPEARE_SHA256 = "540fbf3d4eb4c578193154e292d46118d9a23df6ae7dc09d1f97b00ebb18c4f8"
TEXT_TRAIN_FRACTION_PERCENT = 90


def _load_shakespeare() -> TextDataset:
    """The corpus, its bytes checked against the pinned SHA-256 before anything is built."""
    raw = importlib.resources.files("protocol.datasets").joinpath(SHAKESPEARE_FILE).read_bytes()
    text_bytes = lzma.decompress(raw)
    if sha256(text_bytes).hex() != SHAKESPEARE_SHA256:
        raise DatasetError(f"{SHAKESPEARE_FILE} does not match its pinned SHA-256")
    text = text_bytes.decode("ascii")
    vocab = "".join(sorted(set(text)))
    table = {c: i for i, c in enumerate(vocab)}
    tokens = bytes(table[c] for c in text)
    split = len(tokens) * TEXT_TRAIN_FRACTION_PERCENT // 100
    train, validation = tokens[:split], tokens[split:]
    header = canonical_json(
        {
            "id": "shakespeare-char",
            "vocab": vocab,
            "train": len(train),
            "validation": len(validation),
        }
    )
    digest = sha256(header + train + validation)
    return TextDataset("shakespeare-char", vocab, train, validation, digest)


def _content_hash(
    dataset_id: str,
    num_classes: int,
    train: tuple[tuple[tuple[int, ...], ...], tuple[int, ...]],
    test: tuple[tuple[tuple[int, ...], ...], tuple[int, ...]],
) -> Hash32:
    parts = [
        canonical_json(
            {
                "id": dataset_id,
                "classes": num_classes,
                "train": len(train[1]),
                "test": len(test[1]),
                "frac_bits": FEATURE_FRAC_BITS,
            }
        )
    ]
    for xs, ys in (train, test):
        flat = [v for row in xs for v in row]
        parts.append(struct.pack(f"<{len(flat)}q", *flat))
        parts.append(struct.pack(f"<{len(ys)}q", *ys))
    return sha256(b"".join(parts))


def _build(
    dataset_id: str, rows: list[tuple[int, ...]], labels: list[int], num_classes: int
) -> Dataset:
    """Split every fifth example into the test set and pin the result by hash."""
    train_x = tuple(r for i, r in enumerate(rows) if i % 5 != 4)
    train_y = tuple(y for i, y in enumerate(labels) if i % 5 != 4)
    test_x = tuple(r for i, r in enumerate(rows) if i % 5 == 4)
    test_y = tuple(y for i, y in enumerate(labels) if i % 5 == 4)
    digest = _content_hash(dataset_id, num_classes, (train_x, train_y), (test_x, test_y))
    return Dataset(dataset_id, len(rows[0]), num_classes, train_x, train_y, test_x, test_y, digest)


def _load_digits() -> Dataset:
    raw = importlib.resources.files("protocol.datasets").joinpath("digits.csv.gz").read_bytes()
    rows: list[tuple[int, ...]] = []
    labels: list[int] = []
    for line in gzip.decompress(raw).decode("ascii").splitlines():
        if not line or line.startswith("#"):
            continue
        values = [int(v) for v in line.split(",")]
        # Pixels are 0..16; v/16 in fixed point is v << (FRAC - 4).
        rows.append(tuple(v << (FEATURE_FRAC_BITS - 4) for v in values[:-1]))
        labels.append(values[-1])
    return _build("digits", rows, labels, 10)


def _make_blobs(dataset_id: str, features: int, classes: int, n: int, seed: int) -> Dataset:
    if not (1 <= features <= 1024 and 2 <= classes <= 256 and 5 <= n <= MAX_SYNTHETIC_EXAMPLES):
        raise DatasetError(f"{dataset_id}: sizes out of range")
    one = 1 << FEATURE_FRAC_BITS
    centers = [
        random_below("blobs/center", seed, c, count=features, bound=2 * one + 1)
        for c in range(classes)
    ]
    rows: list[tuple[int, ...]] = []
    labels = random_below("blobs/label", seed, count=n, bound=classes)
    for i, label in enumerate(labels):
        # Sum of 4 uniforms in [-one/2, one/2] ~ bell-shaped noise with std ~ 0.58.
        noise = random_below("blobs/noise", seed, i, count=4 * features, bound=one + 1)
        rows.append(
            tuple(
                centers[label][f] - one + sum(noise[4 * f : 4 * f + 4]) - 2 * one
                for f in range(features)
            )
        )
    return _build(dataset_id, rows, labels, classes)


AnyDataset = Dataset | TextDataset

DIGITS_FEATURES, DIGITS_EXAMPLES = 64, 1797
"""The shape of the shipped ``digits.csv.gz`` (``dataset_values`` reads it without loading)."""
MAX_DATASET_ID_LENGTH = 128


SHIPPED_DATASETS = ("digits", "shakespeare-char")


def dataset_values(dataset_id: str) -> int:
    """How many feature values (features x examples) ``load_dataset(dataset_id)`` would
    generate, read from the id alone, so a caller can bound the cost of loading before paying
    it. A shipped dataset generates none: it is a fixed file in this package, read and checked
    once per process whatever the id says.

    Raises DatasetError for an id that names no dataset (or is too long to be one).
    """
    if len(dataset_id) > MAX_DATASET_ID_LENGTH:
        raise DatasetError(
            f"dataset id is {len(dataset_id)} characters (at most {MAX_DATASET_ID_LENGTH})"
        )
    canonical = _ALIASES.get(dataset_id, dataset_id)
    if canonical in SHIPPED_DATASETS:
        return 0
    match = _BLOBS_RE.match(canonical)
    if match:
        features, _, examples, _ = (int(g) for g in match.groups())
        return features * examples
    raise _unknown_dataset(dataset_id)


def _unknown_dataset(dataset_id: str) -> DatasetError:
    return DatasetError(
        f"unknown dataset {dataset_id!r} (known: 'digits', 'shakespeare-char', "
        "'synthetic-blobs-v1', 'blobs-f{F}-c{C}-n{N}-s{S}')"
    )


@functools.lru_cache(maxsize=32)
def load_dataset(dataset_id: str) -> AnyDataset:
    """The dataset named ``dataset_id``; raises DatasetError for an unknown id."""
    canonical = _ALIASES.get(dataset_id, dataset_id)
    if canonical == "digits":
        return _load_digits()
    if canonical == "shakespeare-char":
        return _load_shakespeare()
    match = _BLOBS_RE.match(canonical)
    if match:
        f, c, n, s = (int(g) for g in match.groups())
        return _make_blobs(dataset_id, f, c, n, s)
    raise _unknown_dataset(dataset_id)


def check_dataset(dataset_id: str, expected_hash_hex: str) -> AnyDataset:
    """Load a dataset and check it against the hash a spec pins; DatasetError on mismatch."""
    dataset = load_dataset(dataset_id)
    if dataset.content_hash_hex != expected_hash_hex.lower():
        raise DatasetError(
            f"dataset {dataset_id!r}: content hash {dataset.content_hash_hex} does not match "
            f"the spec's {expected_hash_hex}"
        )
    return dataset
