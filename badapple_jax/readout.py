"""What an optimised embedding "says": the vocabulary tokens nearest to each of its rows.

The display optimises X freely, so its rows are no tokens; the nearest ones by cosine similarity in the
model's token embedding (`weights.token_embedding`) are the closest words a tokenizer could have fed.
"""
import numpy as np

from badapple_jax.errors import BadInputError
from badapple_jax.model import is_int


def nearest_tokens(x, vocabulary, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """x [L, E], vocabulary [V, E] -> ids [L, k] and their cosine similarities [L, k], most similar first."""
    x, vocabulary = np.asarray(x, np.float32), np.asarray(vocabulary, np.float32)
    if x.ndim != 2 or vocabulary.ndim != 2 or x.shape[1] != vocabulary.shape[1]:
        raise BadInputError(f"x [L, E] and vocabulary [V, E] must share E, got {x.shape} and {vocabulary.shape}.")
    if not is_int(k) or not 1 <= k <= len(vocabulary):
        raise BadInputError(f"k must be an integer in 1..{len(vocabulary)} (the vocabulary's size), got {k!r}.")
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)  # noqa: E731
    cos = unit(x) @ unit(vocabulary).T  # [L, V]
    ids = np.argpartition(-cos, k - 1, axis=-1)[:, :k]  # the k largest, unordered
    ids = np.take_along_axis(ids, np.argsort(-np.take_along_axis(cos, ids, -1), axis=-1), -1)
    return ids, np.take_along_axis(cos, ids, -1)
