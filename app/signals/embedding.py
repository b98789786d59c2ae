"""Sentence vectors from WordLlama's static token embeddings, read from the files in its wheel.

WordLlama (`l2_supercat`, 256 dimensions) is a table of token vectors: a text's vector is the mean
of its tokens' rows. The wheel ships the table and the tokenizer, but importing the package
configures the root logger (`logging.basicConfig` at import) and its loader looks for the
tokenizer where the wheel does not put it and then downloads it. So the two files are read here
directly, with `tokenizers` and `safetensors`, and the package's code is never imported.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

Vectors = npt.NDArray[np.float32]
Table = npt.NDArray[np.float16]

# Distinct words whose tokens are kept: a few MB, more than a support stream's vocabulary.
WORDS_REMEMBERED = 50_000

WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


def package_dir() -> Path:
    """Where the wordllama package is installed, found without importing it."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("wordllama is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class WordTokens:
    """A text's tokens, word by word: each word is tokenized once and remembered."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        """The tokenizer of the wheel, as it reads a whole text."""
        markup = (token.content for token in tokenizer.get_added_tokens_decoder().values())
        self._markup = re.compile("|".join(map(re.escape, markup)))
        self._word_ids = functools.lru_cache(maxsize=WORDS_REMEMBERED)(self._encode_word)

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The tokens of each text: those of its words, one after another.

        The tokenizer's own markup (`<s>`, `</s>`, `<unk>`) is left out, and words are what
        whitespace separates. No token of the vocabulary holds a space but at its start (other than
        runs of spaces, which single spaces between words never make), so a text's tokens are its
        words' tokens (tests/signals/test_intent.py checks both). In the worker the tokenizer took
        0.17 ms a message with cold caches, the remembered words about 0.02 ms.
        """
        return [
            [i for word in self._markup.sub(" ", text).split() for i in self._word_ids(word)]
            for text in texts
        ]

    def _encode_word(self, word: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(word, add_special_tokens=False).ids)


class Embedder:
    """Turns texts into unit vectors; similar meaning, high dot product."""

    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or package_dir()
        self.table: Table = load_file(str(directory / WEIGHTS))["embedding.weight"]
        """One row per token of the tokenizer's vocabulary, in float16 as the wheel stores it (16 MB;
        sums are taken in float32)."""
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokens = WordTokens(tokenizer)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One row per text: the mean of its token vectors, scaled to length 1 (zeros for no tokens)."""
        vectors = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for row, ids in enumerate(self.tokens.ids(texts)):
            if ids:
                # the mean's direction, with one division fewer
                vectors[row] = self.table[ids].sum(axis=0, dtype=np.float32)
        return unit(vectors)


def unit(vectors: Vectors) -> Vectors:
    """Each row scaled to length 1; a row of zeros stays zeros."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    scaled: Vectors = vectors / np.maximum(norms, 1e-12)
    return scaled
