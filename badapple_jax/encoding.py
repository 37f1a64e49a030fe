"""Encodings: how a frame becomes the attention pattern a head is optimised to, and its map a picture.

The pipeline asks one object, never the variant's name:

    tokens(T)    sequence length L the head reads for a T x T display
    mask(T)      [L, L] bool: the (row, column) entries the targets and the loss count
    region(T)    [T, T] bool: the pixels the picture shows (fidelity is measured there)
    target(f)    [..., T, T] frames in [0, 1] -> [..., L, L] desired attention distributions
    desired(f)   -> [..., L, L] desired logits: log(target) centred per row over the mask
    picture(a)   [..., L, L] attention maps -> [..., T, T] gray frames in [0, 1] (jax.numpy: jit, grad)
    constants(T) the documented constants a run used, for metrics.json
    views        embeddings per frame: 1, or 2 for `Full` (a frame and its transpose)

`ZScore` is the reference (SPEC sections 4 and 7): rows normalised, so a row's brightness is lost and
the picture z-scores every row. `Sink` (SPEC 11) adds token 0 as an attention sink that takes what a
row does not give to its pixels, so `z * attention[1:, 1:]` is the frame at its true brightness.
`Full` wraps either: a second embedding shows the transposed frame, filling the causal head's empty
upper triangle. `Quarter` (SPEC 14) shows the whole frame in one causal map instead: 2T + 1 tokens, the
frame below the diagonal, in the block of T row tokens over T column tokens. `causal` is the model's: a
causal head sees j <= i, an encoder head every column.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from badapple_jax.display import normalise_display, stitch_full
from badapple_jax.errors import BadInputError, OptionError
from badapple_jax.layers import visible
from badapple_jax.model import check_fields
from badapple_jax.targets import centred_log, frame_values, quarter_target, row_normalise, sink_target, traced

DISPLAYS = ("sink", "zscore")
MODES = ("causal", "full", "quarter")
# Measured on 8 Bad Apple frames (benchmarks/RESULTS.md): Z / T from 1.5 to 4 gives the same fidelity; a
# black level b of 0.2-0.5 gives +9 dB at 1200 steps over b = 0 (black pixels then need no extreme logit).
SINK_Z = 2.0  # Z / T: a white pixel gets 1 / Z of its row's attention; Z > (1 + b) T keeps the sink's share positive
SINK_BLACK = 0.3  # black level b, in display units: pixels get (f + b) / Z; the picture subtracts it again
SINK_Z_MAX = 1e3  # an upper bound far beyond any useful Z / T, as the optimiser's own limits


def check_sink(z, black, names=("z", "black"), mode="causal") -> None:
    """The sink display's constants, named as the caller names them: b in [0, 1], and Z / T above 1 + b so the
    sink keeps a share of every row (a row of T white pixels takes (1 + b) T / Z of it); in `mode` quarter above
    1 + 2 b (its last row also gives T row tokens b / Z each)."""
    z_name, black_name = names
    if mode == "quarter":
        floor, said = 1 + 2 * black, f"1 + 2 `{black_name}` in mode quarter"
    else:
        floor, said = 1 + black, f"1 + `{black_name}`"
    rules = [
        (math.isfinite(black) and 0 <= black <= 1, f"`{black_name}` must be in [0, 1], got {black}"),
        (math.isfinite(z) and floor < z <= SINK_Z_MAX,
         f"`{z_name}` must exceed {said} (the sink keeps a share of every row) and be at most {SINK_Z_MAX:g}, "
         f"got {z}"),
    ]
    for ok, message in rules:
        if not ok:
            raise OptionError(message + ".")


@dataclasses.dataclass(frozen=True)
class ZScore:
    """The reference's encoding: each visible row a distribution, shown z-scored per row (SPEC 4, 7)."""

    causal: bool = True
    views: int = dataclasses.field(default=1, init=False)

    def __post_init__(self):
        check_fields(self)

    def tokens(self, T: int) -> int:
        return T

    def mask(self, T: int) -> np.ndarray:
        return visible(T, self.causal)

    def region(self, T: int) -> np.ndarray:
        return visible(T, self.causal)

    def target(self, f):
        f = frame_values(f)
        return row_normalise(f, self.mask(f.shape[-1]))

    def desired(self, f):
        return centred_log(self.target(f), self.mask(np.shape(f)[-1]))  # target checked f

    def picture(self, a) -> jax.Array:
        """[..., T, T] attention maps -> [..., T, T] float32 in [0, 1]: each row z-scored, the map clipped to
        its 1st-99th percentiles and blurred (SPEC 7, `display.normalise_display`); 0 outside `region`."""
        return normalise_display(a, self.region(np.shape(a)[-1]))

    def constants(self, T: int) -> dict:
        return {}


@dataclasses.dataclass(frozen=True)
class Sink:
    """Token 0 is an attention sink; display row i is token i + 1 and pixel j token j + 1 (SPEC 11).

    Z = `z` T; pixel (i, j) is given (f + `black`) / Z of row i's attention, the sink the rest; the
    picture is clip(Z attention[1:, 1:] - black, 0, 1): no per-row normalisation, true brightness."""

    causal: bool = True
    z: float = SINK_Z
    black: float = SINK_BLACK
    views: int = dataclasses.field(default=1, init=False)

    def __post_init__(self):  # z and black traced (Settings under jit): checked where the settings were built
        if not (traced(self.z) or traced(self.black)):
            check_fields(self)
            check_sink(self.z, self.black)

    def Z(self, T: int) -> float:
        return self.z * T

    def tokens(self, T: int) -> int:
        return T + 1

    def mask(self, T: int) -> np.ndarray:
        """[T + 1, T + 1] bool: the (row, column) entries targets and loss count: display rows 1..T over the
        sink (column 0) and the pixels they may see; the sink's own row 0 is not counted."""
        m = np.zeros((T + 1, T + 1), bool)
        m[1:, 0] = True
        m[1:, 1:] = visible(T, self.causal)
        return m

    def region(self, T: int) -> np.ndarray:
        """[T, T] bool: the pixels the picture shows, j <= i for a causal head, all for an encoder's."""
        return visible(T, self.causal)

    def target(self, f):
        """[..., T, T] frames in [0, 1] -> [..., T + 1, T + 1] desired attention: pixel (i, j) gets (f + b) / Z of
        row i + 1, the sink the rest; rows and columns outside `mask` 0."""
        f = frame_values(f)
        T = f.shape[-1]
        return sink_target(f, self.region(T), self.Z(T), self.black)

    def desired(self, f):
        """[..., T, T] frames -> [..., T + 1, T + 1] desired logits d: log(target), centred per row over `mask`
        (0 elsewhere), the logits the loss pulls the head's scores towards (SPEC 5)."""
        return centred_log(self.target(f), self.mask(np.shape(f)[-1]))  # target checked f

    def picture(self, a) -> jax.Array:
        """[..., T + 1, T + 1] attention maps -> [..., T, T] float32 in [0, 1]: clip(Z a[1:, 1:] - b, 0, 1), the
        frame at its true brightness, 0 outside `region`. Z and b may be traced (jit, grad)."""
        T = np.shape(a)[-1] - 1
        return _sink_picture(jnp.asarray(a, jnp.float32), jnp.asarray(self.Z(T), jnp.float32),
                             jnp.asarray(self.black, jnp.float32), self.region(T))

    def constants(self, T: int) -> dict:
        return {"sink_z": self.Z(T), "sink_black": self.black}


@jax.jit  # one program per shape, never per Z or b
def _sink_picture(a, Z, black, region):  # [..., T + 1, T + 1], scalars, [T, T] bool -> [..., T, T]
    return jnp.where(region, jnp.clip(Z * a[..., 1:, 1:] - black, 0.0, 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class Full:
    """Two embeddings per frame: `inner` shows the frame and, in a second view, its transpose, whose
    lower triangle transposed back fills the upper one. Results carry a view axis after the frame axis."""

    inner: ZScore | Sink
    views: int = dataclasses.field(default=2, init=False)

    def __post_init__(self):
        if not isinstance(self.inner, (ZScore, Sink)):
            raise BadInputError(f"Full shows a ZScore or a Sink encoding in two views, got {self.inner!r}.")

    def tokens(self, T: int) -> int:
        return self.inner.tokens(T)

    def mask(self, T: int) -> np.ndarray:
        return self.inner.mask(T)

    def region(self, T: int) -> np.ndarray:
        return np.ones((T, T), bool)

    def target(self, f):
        return self.inner.target(f)

    def desired(self, f):
        return self.inner.desired(f)

    def picture(self, a) -> jax.Array:  # [N, 2, ..., L, L] -> [N, ..., T, T]
        """Each view pictured in its own orientation; the diagonal comes from the frame's own view."""
        return stitch_full(self.inner.picture(jnp.moveaxis(jnp.asarray(a), 1, -3)))

    def constants(self, T: int) -> dict:
        return self.inner.constants(T)


@dataclasses.dataclass(frozen=True)
class Quarter:
    """The whole frame in the bottom-left quarter of one causal map (SPEC 14): L = 2T + 1 tokens, token 0 the
    sink, 1..T the column tokens, T+1..2T the row tokens. Display row i is token T + 1 + i and pixel j token 1 + j.

    Z = `z` T; pixel (i, j) is given (f + `black`) / Z of row i's attention, each row token it sees `black` / Z
    (never shown: it spares them extreme logits), the sink the rest; the picture is
    clip(Z attention[T+1:, 1:T+1] - black, 0, 1). For causal heads only: an encoder's sees the frame with `Sink`."""

    z: float = SINK_Z
    black: float = SINK_BLACK
    views: int = dataclasses.field(default=1, init=False)

    def __post_init__(self):  # z and black traced (Settings under jit): checked where the settings were built
        if not (traced(self.z) or traced(self.black)):
            check_fields(self)
            check_sink(self.z, self.black, mode="quarter")

    def Z(self, T: int) -> float:
        return self.z * T

    def tokens(self, T: int) -> int:
        return 2 * T + 1

    def mask(self, T: int) -> np.ndarray:
        """[2T + 1, 2T + 1] bool: the row tokens' rows T+1..2T over every column they may see (the sink, the T
        column tokens and the row tokens up to their own); the sink's and the column tokens' rows are not counted."""
        m = np.tri(2 * T + 1, dtype=bool)
        m[:T + 1] = False
        return m

    def region(self, T: int) -> np.ndarray:
        """[T, T] bool: the whole frame, every pixel below the diagonal of the one causal map."""
        return np.ones((T, T), bool)

    def target(self, f):
        """[..., T, T] frames in [0, 1] -> [..., 2T + 1, 2T + 1] desired attention (`targets.quarter_target`): pixel
        (i, j) gets (f + b) / Z of token row T + 1 + i, each row token it sees b / Z, the sink the rest."""
        f = frame_values(f)
        return quarter_target(f, self.Z(f.shape[-1]), self.black)

    def desired(self, f):
        """[..., T, T] frames -> [..., 2T + 1, 2T + 1] desired logits: log(target), centred per row over `mask`."""
        return centred_log(self.target(f), self.mask(np.shape(f)[-1]))  # target checked f

    def picture(self, a) -> jax.Array:
        """[..., 2T + 1, 2T + 1] attention maps -> [..., T, T] float32 in [0, 1]: clip(Z a[T+1:, 1:T+1] - b, 0, 1),
        the whole frame at its true brightness. Z and b may be traced (jit, grad)."""
        L = np.shape(a)[-1]
        if np.ndim(a) < 2 or np.shape(a)[-2] != L or L % 2 == 0:
            raise BadInputError(f"quarter maps must be [..., 2T + 1, 2T + 1], got shape {np.shape(a)}.")
        T = (L - 1) // 2
        return _quarter_picture(jnp.asarray(a, jnp.float32), jnp.asarray(self.Z(T), jnp.float32),
                                jnp.asarray(self.black, jnp.float32))

    def constants(self, T: int) -> dict:
        return {"sink_z": self.Z(T), "sink_black": self.black}


@jax.jit  # one program per shape, never per Z or b
def _quarter_picture(a, Z, black):  # [..., 2T + 1, 2T + 1], scalars -> [..., T, T]
    T = (a.shape[-1] - 1) // 2
    return jnp.clip(Z * a[..., T + 1:, 1:T + 1] - black, 0.0, 1.0)


def make_encoding(display: str = "sink", mode: str = "causal", causal: bool = True, z: float = SINK_Z,
                  black: float = SINK_BLACK) -> ZScore | Sink | Full | Quarter:
    """The encoding named by the `display` and `mode` settings, for a causal or an encoder head."""
    for name, value, choices in (("display", display, DISPLAYS), ("mode", mode, MODES)):
        if value not in choices:
            raise OptionError(f"`{name}` must be one of {', '.join(choices)}, got {value}.")
    if mode == "quarter" and display != "sink":
        raise OptionError(f"`mode` quarter needs `display` sink, got {display}: its picture is Z * attention, the "
                          "frame only where a sink takes the rest of every row.")
    if mode != "causal" and not causal:
        raise BadInputError(f"mode {mode} is for causal models: an encoder's head already shows the whole frame "
                            "with one embedding.")
    if mode == "quarter":
        return Quarter(z, black)
    inner = Sink(causal, z, black) if display == "sink" else ZScore(causal)
    return Full(inner) if mode == "full" else inner


def largest_size(encoding, positions: int) -> int:
    """The largest display size T whose tokens `encoding` reads within a model's `positions` (0: none fits)."""
    return max((T for T in range(1, positions + 1) if encoding.tokens(T) <= positions), default=0)
