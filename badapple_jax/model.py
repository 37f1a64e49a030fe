"""A model as the pipeline sees it: its configuration, one layer's attention inputs, one head.

A model family (`families.py`: GPT-2, BERT, Llama, Qwen2, Mistral, GPT-NeoX) turns its checkpoint into these plain arrays; the kernel,
head space, encodings and the render read only them, so none of them knows which family it runs.
"""
import dataclasses
import json
import math
import numbers
from pathlib import Path
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp

from badapple_jax.errors import BadInputError, OptionError
from badapple_jax.layers import ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int  # the longest sequence: rows of the position embedding, or a rotary model's context
    eps: float  # the norm's epsilon
    family: str = "gpt2"  # config.json's model_type: the module that knows the keys and the block (families.py)
    causal: bool = True  # a decoder's row i sees columns j <= i; an encoder's every column
    n_inner: int = 0  # MLP width of a block; 0 means 4 n_embd
    act: str = "gelu_new"  # the MLP's activation, as config.json names it (layers.ACTIVATIONS)
    n_types: int = 0  # rows of BERT's token-type embedding (type 0 is added to every position); 0 for GPT-2
    n_vocab: int = 0  # rows of the token embedding (config vocab_size); 0: not given
    norm: str = "layer"  # the norm the heads read through: "layer" (LayerNorm) or "rms" (RMSNorm: no mean, no bias)
    n_kv_head: int = 0  # key (and value) heads: grouped-query attention; 0 means n_head
    head_dim: int = 0  # width of a head; 0 means n_embd // n_head
    rotary_dim: int = 0  # leading dims of each head's q and k rotated by position (RoPE); 0: none
    rope_theta: float = 10000.0  # RoPE's base: pair m of dims turns by position * theta^(-2m / rotary_dim)
    rope_llama3: tuple = ()  # rope_scaling llama3's (factor, low_freq_factor, high_freq_factor, original context)
    parallel: bool = False  # GPT-NeoX's parallel residual: x + attn(ln_1(x)) + mlp(ln_2(x))
    qkv_bias: bool = True  # the q, k and v projections have biases
    out_bias: bool = True  # the attention's output projection has a bias
    mlp_bias: bool = True  # the MLP's projections have biases

    @property
    def d_head(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    @property
    def n_kv(self) -> int:  # key heads; query head h reads key head h // (n_head / n_kv)
        return self.n_kv_head or self.n_head

    @property
    def d_mlp(self) -> int:
        return self.n_inner or 4 * self.n_embd


@flax.struct.dataclass
class LayerWeights:
    pos: jax.Array  # [n_positions, n_embd] added to X (GPT-2: wpe; BERT: pos + type 0); [0, n_embd]: none (RoPE)
    ln_g: jax.Array  # [n_embd]  the norm the target layer's attention reads through
    ln_b: jax.Array  # [n_embd]  (zero for RMSNorm)
    w_q: jax.Array  # [n_embd, n_head d_head]  every head's query columns, head-major: x @ W
    b_q: jax.Array  # [n_head d_head]  (zero where the model has none)
    w_k: jax.Array  # [n_embd, n_kv d_head]  every key head's columns
    b_k: jax.Array  # [n_kv d_head]
    blocks: tuple  # the blocks below the target layer, as the family's `block` takes them
    config: ModelConfig = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class HeadWeights:
    """One head's part of its layer, all `kernel.py` needs for A = R(h W_q + b_q) R(h W_k + b_k)^T / sqrt(d_head),
    with h = Norm(u; ln_g, ln_b), u = X + pos[:T] carried through `blocks`, R the rotation by position (RoPE):

        pos         [n_positions, n_embd]  added to X (GPT-2: wpe; BERT: position + token type 0); [0, n_embd]: none
        ln_g, ln_b  [n_embd]               the norm the head reads through (GPT-2: the layer's ln_1)
        w_q, w_k    [n_embd, d_head]       the head's query columns and its key head's columns
        b_q, b_k    [d_head]
        blocks      the blocks below the head's layer, as the family's `block` takes them (none at layer 0)
        config      the model's ModelConfig (static)

    `pick_head` makes one; `pick_heads` stacks H heads (a colour group) on a leading axis of every array."""

    pos: jax.Array
    ln_g: jax.Array
    ln_b: jax.Array
    w_q: jax.Array
    b_q: jax.Array
    w_k: jax.Array
    b_k: jax.Array
    blocks: tuple
    config: ModelConfig = flax.struct.field(pytree_node=False)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str  # as the model was named (--model)
    source: str  # one readable line: where the weights came from
    is_random: bool
    config: ModelConfig

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Family:
    """What loading and running one model family takes; `families.py` lists them by config.json's model_type."""

    config: Callable[[dict, Path], ModelConfig]  # config.json's fields -> ModelConfig, each checked
    shapes: Callable[[ModelConfig, int], dict]  # checkpoint key -> shape, for all that layer L's heads read
    layer: Callable[[dict, ModelConfig, int], LayerWeights]  # those arrays -> LayerWeights of layer L
    block: Callable  # (u [T, E], params, config) -> u [T, E]: one block below the target layer
    init: Callable  # (key, x ~ N(0, 1), config) -> a random weight of that key, for `random:` models
    checkpoint: Callable  # (config, n_layer) -> (key -> shape of a whole n_layer model, its config.json) for export
    vocabulary: str  # the key of the token embedding [n_vocab, n_embd], which the display itself never reads
    prefixes: tuple = ()  # key prefixes a file may add ("transformer.", "bert.")
    random: dict = dataclasses.field(default_factory=dict)  # random:NAME -> ModelConfig


def is_int(value) -> bool:
    """An integer as a parameter takes it (Python's or NumPy's); True is none, though Python counts it as 1."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


KINDS = {int: ("an integer", is_int), bool: ("True or False", lambda v: isinstance(v, bool)),
         float: ("a number", lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)),
         str: ("a string", lambda v: isinstance(v, str))}


def check_fields(obj) -> None:
    """Refuse a field of the dataclass `obj` that is not of its declared type (an int is a number, True is no
    integer), naming it as an option, before any rule compares it with a number."""
    for f in dataclasses.fields(obj):
        kind, ok = KINDS[f.type]
        if not ok(getattr(obj, f.name)):
            raise OptionError(f"`{f.name}` must be {kind}, got {getattr(obj, f.name)!r}.")


def kv_head(c: ModelConfig, head: int) -> int:
    """The key head query head `head` reads: grouped-query attention shares one among n_head / n_kv queries."""
    return head // (c.n_head // c.n_kv)


def pick_head(w: LayerWeights, head: int) -> HeadWeights:
    """Head `head`'s query columns and its key head's columns."""
    c = w.config
    if not is_int(head) or not 0 <= head < c.n_head:
        raise BadInputError(f"head {head!r} is out of range: the model has n_head {c.n_head} "
                            f"(valid 0..{c.n_head - 1}).")
    d, g = c.d_head, kv_head(c, head)
    q, k = slice(head * d, (head + 1) * d), slice(g * d, (g + 1) * d)
    return HeadWeights(pos=w.pos, ln_g=w.ln_g, ln_b=w.ln_b, w_q=w.w_q[:, q], b_q=w.b_q[q],
                       w_k=w.w_k[:, k], b_k=w.b_k[k], blocks=w.blocks, config=c)


def positions(pos, T: int):  # [P, E] -> [T, E] added to X, or 0 where position enters by rotation (P = 0)
    return pos[:T] if pos.shape[-2] else 0.0


def group_of(w: HeadWeights) -> tuple:  # (H,) for a group of H heads stacked on a leading axis, () for one head
    """The one place that tells a group of heads from one head: a group's arrays carry a leading head axis."""
    return w.w_q.shape[:1] if w.w_q.ndim == 3 else ()


def pick_heads(w: LayerWeights, heads) -> HeadWeights:
    """Several distinct heads stacked on a leading axis of every array: a group one embedding drives (colour)."""
    heads = list(heads)
    picked = [pick_head(w, h) for h in heads]
    if not picked or len(set(heads)) < len(heads):
        raise BadInputError(f"heads must be one or more distinct heads, got {heads}.")
    return jax.tree.map(lambda *a: jnp.stack(a), *picked)


# Bounds far beyond any real model (gpt2-xl: 48 layers, n_embd 1600, 1024 positions) yet small enough that a
# corrupt config.json is refused here rather than by an out-of-memory error or a loop over a billion layers.
LIMITS = {"n_layer": 1000, "n_head": 65536, "n_embd": 65536, "n_positions": 1 << 20, "n_inner": 1 << 20,
          "n_types": 1 << 16, "n_vocab": 1 << 24, "n_kv_head": 65536, "head_dim": 65536}


def quoted(value) -> str:
    """A config value as JSON on one short line (json.dumps escapes newlines)."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_config(raw: dict, path: Path, names: dict, *, eps: tuple, act: tuple, optional=(), **fixed) -> ModelConfig:
    """A ModelConfig from config.json's fields, each checked: `names` maps a JSON name to a ModelConfig field,
    those in `optional` may be absent or null (the field's default); `eps` and `act` are (JSON name, default).
    A float or a string where an integer belongs is a corrupt file, not something to round."""
    ints = {}
    for name, field in names.items():
        if name in optional and raw.get(name) is None:
            continue
        if name not in raw:
            raise BadInputError(f"{path} lacks {name}: it is not a {fixed['family']} config.json.")
        value = raw[name]
        if not is_int(value):
            raise BadInputError(f"{path}: {name} is {quoted(value)}, expected an integer.")
        if not 1 <= value <= LIMITS[field]:
            raise BadInputError(f"{path}: {name} is {quoted(value)}, expected an integer from 1 to {LIMITS[field]}.")
        ints[field] = value
    eps_value = raw.get(eps[0], eps[1])
    # Positive, or LayerNorm divides by zero on a constant row; at most 1 (GPT-2 uses 1e-5), since an epsilon the
    # size of the activations' variance no longer normalises them. json reads NaN and Infinity: hence isfinite.
    if (not isinstance(eps_value, (int, float)) or isinstance(eps_value, bool)
            or not (math.isfinite(eps_value) and 0 < eps_value <= 1)):
        raise BadInputError(f"{path}: {eps[0]} is {quoted(eps_value)}, expected a number in (0, 1].")
    act_value = raw.get(act[0], act[1])
    if not isinstance(act_value, str) or act_value not in ACTIVATIONS:  # a list would be unhashable
        raise BadInputError(f"{path}: {act[0]} is {quoted(act_value)}; supported: {', '.join(ACTIVATIONS)}.")
    config = ModelConfig(**ints, eps=float(eps_value), act=act_value, **fixed)
    if not config.head_dim and config.n_embd % config.n_head:
        raise BadInputError(f"{path}: {_name(names, 'n_embd')} {config.n_embd} is not a multiple of "
                            f"{_name(names, 'n_head')} {config.n_head}.")
    if config.n_head % config.n_kv:
        raise BadInputError(f"{path}: {_name(names, 'n_head')} {config.n_head} is not a multiple of "
                            f"{_name(names, 'n_kv_head')} {config.n_kv}.")
    return config


def read_flag(raw: dict, path, name: str, default: bool) -> bool:
    """A true/false field of config.json, `default` where absent."""
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise BadInputError(f"{path}: {name} is {quoted(value)}, expected true or false.")
    return value


def _name(names: dict, field: str) -> str:  # the JSON name of a ModelConfig field
    return next(k for k, v in names.items() if v == field)
