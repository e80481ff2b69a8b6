"""Embedding (token ids -> learned vectors), PositionEmbedding (a learned table added per position)
and ClassToken (learned tokens prepended to a sequence)."""

import numpy as np

from .. import fields
from ..errors import DataError, ShapeError
from ..text import shape as shape_text
from .base import Layer, layer, require_rank


def _label(layer):
    kind = type(layer).__name__
    return f"{kind} '{layer.name}'" if layer.name else kind


def scatter_rows(ids, rows, n):
    """``out[i] = sum of rows[m] over the m with ids[m] == i``, an ``(n, D)`` array: the adjoint of
    ``table[ids]``. ``np.add.at`` (unbuffered, so repeated ids add up): for (64, 128) ids over a
    10000 x 64 float32 table it took 3.6 ms against 9.3 ms for a flat ``np.bincount`` (which also
    works in float64) and 8.1 ms for sorting the ids and summing runs with ``np.add.reduceat``
    (NumPy 2.4, one thread)."""
    out = np.zeros((n, rows.shape[-1]), rows.dtype)
    np.add.at(out, ids, rows)
    return out


@layer("Embedding")
class Embedding(Layer):
    """A learned vector per token id: ``(N, ...)`` integer ids -> ``(N, ..., output_dim)``;
    ``embeddings`` is ``(input_dim, output_dim)``.

    The ids may be any integer array (a model input of dtype ``int64``), or float values that are
    whole numbers (a float32 model input); an id outside ``[0, input_dim)`` is a ``DataError`` naming the layer
    and the id. There is no gradient with respect to the ids: ``backward`` returns zeros (or
    ``None`` when the model needs none).

    With ``mask_zero`` the layer records which positions hold a real token (``ids != 0``) as
    ``cache.mask`` at each forward pass (``compute_mask(ids)`` gives the same); no regnet layer
    reads it yet, so id 0 is still embedded and flows on like any other id.

    >>> import numpy as np
    >>> emb = Embedding(input_dim=5, output_dim=2, embeddings_initializer="ones")
    >>> emb.setup((3,), np.random.default_rng(0))
    (3, 2)
    >>> emb(np.array([[0, 4, 4]]))
    array([[[1., 1.],
            [1., 1.],
            [1., 1.]]], dtype=float32)
    >>> _ = emb.call_backward(np.ones((1, 3, 2), np.float32))
    >>> emb.grads["embeddings"][:, 0]
    array([1., 0., 0., 0., 2.], dtype=float32)
    """

    input_dim: int = fields.integer(min=1, doc="the vocabulary size: ids lie in [0, input_dim)")
    output_dim: int = fields.integer(min=1, doc="the length of each embedding vector")
    embeddings_initializer: str | dict = fields.initializer("uniform", doc="how the embedding table starts")
    mask_zero: bool = fields.boolean(False, doc="record ids != 0 as a mask for later layers (cache.mask)")

    integer_inputs = True  # reads an int64 model input (token ids)
    #: not config fields: the conformance kit feeds integer ids in [0, input_dim)
    test_config = {"input_dim": 7, "output_dim": 3}
    test_input_shape = (4,)
    test_input_dtype = "int64"
    test_input_range = (0, 7)
    test_cases = [
        {"config": {"input_dim": 7, "output_dim": 2, "mask_zero": True}, "input_shape": (2, 3)},
    ]

    def build(self, input_shape, rng):
        self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer, rng)
        return (*input_shape, self.output_dim)

    def _ids(self, x):
        x = np.asarray(x)
        if x.dtype.kind in "iu":
            ids = x
        elif x.dtype.kind == "f":
            ids = x.astype(np.int64)
            whole = ids == x
            if not whole.all():
                bad = x[~whole].flat[0].item()
                raise DataError(f"{_label(self)}: token ids must be whole numbers, got {bad!r}")
        else:
            raise DataError(f"{_label(self)}: token ids must be integers, got dtype {x.dtype}")
        if ids.size:
            lo, hi = ids.min(), ids.max()
            if lo < 0 or hi >= self.input_dim:
                bad = lo if lo < 0 else hi
                raise DataError(
                    f"{_label(self)}: token id {int(bad)} is outside [0, {self.input_dim}) (input_dim {self.input_dim})"
                )
        return ids

    def compute_mask(self, x):
        """``ids != 0`` with ``mask_zero``, else ``None``."""
        return (np.asarray(x) != 0) if self.mask_zero else None

    def forward(self, x, training=False):
        ids = self._ids(x)
        table = self.params["embeddings"]
        self.cache.ids, self.cache.shape = ids, np.shape(x)
        if self.mask_zero:
            self.cache.mask = ids != 0
        return table[ids]

    def backward(self, grad, *, need_input_grad=True):
        ids = self.cache.ids
        rows = grad.reshape(-1, self.output_dim)
        self.grads["embeddings"][...] = scatter_rows(ids.reshape(-1), rows, self.input_dim)
        if not need_input_grad:
            return None
        return np.zeros(self.cache.shape, grad.dtype)  # piecewise constant in the ids


@layer("PositionEmbedding")
class PositionEmbedding(Layer):
    """A learned vector per position added to the input: ``(N, L, D) -> (N, L, D)``, ``y = x +
    embeddings[:L]``; ``embeddings`` is ``(sequence_length, D)`` and ``L`` may be shorter than
    ``sequence_length`` (keras-hub's PositionEmbedding).

    >>> import numpy as np
    >>> pos = PositionEmbedding(sequence_length=4, initializer="ones")
    >>> pos.setup((2, 3), np.random.default_rng(0))
    (2, 3)
    >>> pos(np.zeros((1, 2, 3), np.float32))
    array([[[1., 1., 1.],
            [1., 1., 1.]]], dtype=float32)
    """

    sequence_length: int = fields.integer(min=1, doc="the longest sequence the table covers")
    initializer: str | dict = fields.initializer("glorot_uniform", doc="how the position table starts")

    test_config = {"sequence_length": 4}  # as long as the input: ONNX round trips keep only the rows read
    test_input_shape = (4, 3)

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (2,))
        length, d = input_shape
        if length > self.sequence_length:
            raise ShapeError(
                f"PositionEmbedding input {shape_text(input_shape)} has {length} positions, more than "
                f"sequence_length {self.sequence_length}",
                field="sequence_length",
            )
        self.add_weight("embeddings", (self.sequence_length, d), self.initializer, rng)
        return tuple(input_shape)

    def forward(self, x, training=False):
        return x + self.params["embeddings"][: x.shape[1]]

    def backward(self, grad, *, need_input_grad=True):
        length = grad.shape[1]
        g = self.grads["embeddings"]
        g[length:] = 0
        np.sum(grad, axis=0, out=g[:length])
        return grad if need_input_grad else None


@layer("ClassToken")
class ClassToken(Layer):
    """Learned tokens prepended to a sequence: ``(N, L, D) -> (N, num_tokens + L, D)``, each
    sample gets the same ``tokens`` ``(num_tokens, D)`` before its own ``L`` vectors (a vision
    transformer's class token; DeiT's distillation token is a second one). PyTorch models keep it
    as a ``(1, num_tokens, D)`` parameter expanded to the batch and concatenated.

    >>> import numpy as np
    >>> cls = ClassToken(tokens_initializer="ones")
    >>> cls.setup((2, 3), np.random.default_rng(0))
    (3, 3)
    >>> cls(np.zeros((1, 2, 3), np.float32))
    array([[[1., 1., 1.],
            [0., 0., 0.],
            [0., 0., 0.]]], dtype=float32)
    """

    num_tokens: int = fields.integer(1, min=1, doc="how many learned tokens come before the sequence")
    tokens_initializer: str | dict = fields.initializer("zeros", doc="how the tokens start")

    #: not config fields: how the conformance kit tests this layer (random tokens: zeros would hide
    #: a token written in the wrong place)
    test_config = {"tokens_initializer": "glorot_uniform"}
    test_input_shape = (4, 3)
    test_cases = [
        {"config": {"tokens_initializer": "glorot_uniform"}, "input_shape": (4, 3)},
        {"config": {"num_tokens": 2, "tokens_initializer": "glorot_uniform"}, "input_shape": (3, 5)},
    ]

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (2,))
        length, d = input_shape
        self.add_weight("tokens", (self.num_tokens, d), self.tokens_initializer, rng)
        return (None if length is None else length + self.num_tokens, d)

    def forward(self, x, training=False):
        tokens = self.params["tokens"].astype(x.dtype, copy=False)
        return np.concatenate([np.broadcast_to(tokens, (x.shape[0], *tokens.shape)), x], axis=1)

    def backward(self, grad, *, need_input_grad=True):
        k = self.num_tokens
        np.sum(grad[:, :k], axis=0, out=self.grads["tokens"])
        return grad[:, k:] if need_input_grad else None
