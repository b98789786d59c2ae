"""Sentence vectors from WordLlama's static token embeddings, read from the files in its wheel.

WordLlama (`l2_supercat`, 256 dimensions) is a table of token vectors: a text's vector is the mean
of its tokens' rows. The wheel ships the table and the tokenizer, but importing the package
configures the root logger (`logging.basicConfig` at import) and its loader looks for the
tokenizer where the wheel does not put it and then downloads it. So the two files are read here
directly, with `tokenizers` and `safetensors`, and the package's code is never imported.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

Vectors = npt.NDArray[np.float32]

WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


def package_dir() -> Path:
    """Where the wordllama package is installed, found without importing it."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("wordllama is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class Embedder:
    """Turns texts into unit vectors; similar meaning, high dot product."""

    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or package_dir()
        self._table: Vectors = load_file(str(directory / WEIGHTS))["embedding.weight"].astype(np.float32)
        self._tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One row per text: the mean of its token vectors, scaled to length 1 (zeros for no tokens)."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        vectors = np.zeros((len(texts), self._table.shape[1]), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            if encoding.ids:
                vectors[row] = self._table[encoding.ids].mean(axis=0)
        return unit(vectors)


def unit(vectors: Vectors) -> Vectors:
    """Each row scaled to length 1; a row of zeros stays zeros."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    scaled: Vectors = vectors / np.maximum(norms, 1e-12)
    return scaled
