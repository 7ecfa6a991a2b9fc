"""The purpose encoder: an applicant's free-text loan purpose as a 32-number vector.

For a model-risk reader: the encoder is a bag of words. Each known word has a learned row in an
embedding table; a purpose is the mean of its words' rows, projected to `dim` numbers and
scaled to length 1, so long and short purposes weigh the same. Words outside the vocabulary
all share the `[UNK]` row. The encoder is a folder, `models/encoder/`:

    config.json         dim, hidden width, vocabulary size, the unknown-word token
    vocab.txt           one word per line; the line number is the word's row
    model.safetensors   "embedding" (vocab x hidden) and "projection" (hidden x dim), float32
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

_WORD = re.compile(r"[a-z0-9]+")
# Nothing is dropped: in loan purposes "my" and "for" carry little, but the model was
# trained on the text as written, and dropping them would move every vector.
STOPWORDS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Encoder:
    """A loaded purpose encoder (see the module docstring for what the arrays mean)."""

    words: dict[str, int]
    unknown: int
    embedding: np.ndarray  # (vocab, hidden) float32
    projection: np.ndarray  # (hidden, dim) float32

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])


def load_encoder(path: Path) -> Encoder:
    """The encoder stored in the folder `path`; refuses a folder whose parts disagree."""
    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    vocab = (path / "vocab.txt").read_text().splitlines()
    arrays = load_file(str(path / "model.safetensors"))
    embedding, projection = arrays["embedding"], arrays["projection"]
    expected = {
        "embedding": (config["vocab_size"], config["hidden"]),
        "projection": (config["hidden"], config["dim"]),
    }
    for name, array in (("embedding", embedding), ("projection", projection)):
        if array.shape != expected[name] or array.dtype != np.float32:
            raise ValueError(
                f"{path}: {name} is {array.dtype}{list(array.shape)}, "
                f"config.json says float32{list(expected[name])}"
            )
    if len(vocab) != config["vocab_size"]:
        raise ValueError(
            f"{path}: vocab.txt has {len(vocab)} words, config.json says {config['vocab_size']}"
        )
    words = {word: row for row, word in enumerate(vocab)}
    return Encoder(words, words[config["unknown"]], embedding, projection)


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers, in order; punctuation separates words."""
    return [word for word in _WORD.findall(text.lower()) if word not in STOPWORDS]


def encode(encoder: Encoder, texts: list[str]) -> np.ndarray:
    """One unit-length float32 vector per text (all zeros for a text with no words)."""
    rows, ids = _token_ids(encoder, texts)
    hidden = encoder.embedding.shape[1]
    pooled = np.zeros((len(texts), hidden), np.float32)
    np.add.at(pooled, rows, encoder.embedding[ids])  # sequential sums: no BLAS involved
    counts = np.bincount(rows, minlength=len(texts)).astype(np.float32)
    pooled /= np.maximum(counts, 1)[:, None]
    # A float32 matrix product goes through OpenBLAS sgemm: its last bits depend on which
    # CPU kernel OpenBLAS picked (OPENBLAS_CORETYPE), so a replay on another machine can
    # differ here by a float32 step or two (up to 1.2e-7 measured): a tolerance, declared.
    projected = pooled @ encoder.projection
    norms = np.sqrt(np.einsum("ij,ij->i", projected, projected))[:, None]
    return np.divide(projected, norms, out=np.zeros_like(projected), where=norms > 0)


def _token_ids(encoder: Encoder, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(row of each token, vocabulary id of each token), flattened over all texts."""
    rows: list[int] = []
    ids: list[int] = []
    for row, text in enumerate(texts):
        for word in tokenize(text):
            rows.append(row)
            ids.append(encoder.words.get(word, encoder.unknown))
    return np.asarray(rows, np.intp), np.asarray(ids, np.intp)
