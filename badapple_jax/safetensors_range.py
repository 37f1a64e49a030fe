"""Read single tensors out of a safetensors file through `read(offset, length) -> bytes`.

One code path for a local file (seek + read) and for the hub (HTTP Range GET), so a
checkpoint is checked the same way wherever it lives. The format
(https://github.com/huggingface/safetensors): an 8-byte little-endian header length N,
N bytes of JSON `{key: {"dtype", "shape", "data_offsets": [begin, end]}}`, then the data,
with offsets counted from byte 8 + N.
"""
import dataclasses
import json
import math
import os
import struct
from typing import Callable

import numpy as np
from huggingface_hub import get_session
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

from .errors import BadInputError

Read = Callable[[int, int], bytes]  # (offset, length) -> at most `length` bytes

MAX_HEADER = 100 * 2**20  # the safetensors library itself refuses headers over 100 MB
TIMEOUT = 10.0  # seconds; a hub that does not answer in that time is treated as unreachable
DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}  # BF16 is widened by hand


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    nbytes: int


def file_reader(path: str | os.PathLike) -> Read:
    def read(offset: int, length: int) -> bytes:
        try:
            with open(path, "rb") as f:  # reopened per tensor: a handful of reads, no handle left open
                f.seek(offset)
                return f.read(length)
        except OSError as e:  # unreadable, removed meanwhile, a directory, a disk error: one line, not a traceback
            raise BadInputError(f"cannot read {path}: {e.strerror or e}.") from None

    return read


def http_reader(url: str, name: str) -> Read:
    """Range GETs through huggingface_hub's session and headers (token, user agent, redirects)."""
    session, headers = get_session(), build_hf_headers()

    def read(offset: int, length: int) -> bytes:
        if length == 0:
            return b""
        byte_range = {"Range": f"bytes={offset}-{offset + length - 1}", "Accept-Encoding": "identity"}
        with session.stream("GET", url, headers={**headers, **byte_range}, timeout=TIMEOUT) as r:
            if r.status_code == 416:  # range starts past the end of the file
                return b""
            if r.status_code >= 400:
                r.read()
                hf_raise_for_status(r)
            if r.status_code != 206:  # a 200 would stream the whole multi-GB file: refuse before reading it
                raise BadInputError(f"{name}: the server ignored the byte-range request (HTTP {r.status_code}).")
            return r.read()

    return read


def read_header(read: Read, name: str, size: int | None = None) -> dict[str, TensorInfo]:
    """Tensor table of the file `name` (`size` bytes long, if known), keys as stored."""
    prefix = read(0, 8)
    if len(prefix) < 8:
        raise BadInputError(f"{name} is not a safetensors file: it is shorter than 8 bytes.")
    (n,) = struct.unpack("<Q", prefix)
    if not 2 <= n <= MAX_HEADER:
        raise BadInputError(f"{name} is not a safetensors file: its header length {n} is impossible.")
    if size is not None and 8 + n > size:
        raise BadInputError(f"{name} is truncated: its header needs {n} bytes, found {size - 8}.")
    raw = read(8, n)
    if len(raw) < n:
        raise BadInputError(f"{name} is truncated: its header needs {n} bytes, found {len(raw)}.")
    try:
        header = json.loads(raw, object_pairs_hook=lambda pairs: _distinct(pairs, name))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadInputError(f"{name} is not a safetensors file: its header is not valid JSON.") from None
    if not isinstance(header, dict):
        raise BadInputError(f"{name} is not a safetensors file: its header is not a JSON object.")
    table = {k: _tensor_info(k, v, 8 + n, name) for k, v in header.items() if k != "__metadata__"}
    for key, info in table.items():
        if size is not None and info.start + info.nbytes > size:
            raise BadInputError(f"{name} is truncated or corrupt: {key} ends at byte {info.start + info.nbytes} "
                                f"of a {size}-byte file.")
    return table


def _distinct(pairs: list, name: str) -> dict:
    """A header object from its (key, value) pairs; a key given twice is refused (json.loads would keep the last,
    a tensor chosen silently)."""
    table = {}
    for key, value in pairs:
        if key in table:
            raise BadInputError(f"{name} is not a safetensors file: its header names {key} twice.")
        table[key] = value
    return table


def _tensor_info(key: str, entry, data_start: int, name: str) -> TensorInfo:
    try:
        dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
        ok = isinstance(dtype, str) and all(isinstance(d, int) and d >= 0 for d in shape + (begin, end))
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok or begin > end:
        raise BadInputError(f"{name} has a malformed safetensors header entry for {key}.")
    return TensorInfo(dtype, shape, data_start + begin, end - begin)


def read_tensor(read: Read, info: TensorInfo, key: str, name: str) -> np.ndarray:
    """The tensor `key` as a float32 array; F16 and BF16 are up-cast exactly."""
    if info.dtype not in DTYPES:
        raise BadInputError(f"{name}: {key} has dtype {info.dtype}, expected F32, F16 or BF16.")
    dtype = DTYPES[info.dtype]
    if math.prod(info.shape) * dtype.itemsize != info.nbytes:
        raise BadInputError(f"{name}: {key} declares shape {info.shape} but {info.nbytes} bytes of {info.dtype}.")
    raw = read(info.start, info.nbytes)
    if len(raw) != info.nbytes:
        raise BadInputError(f"{name} is truncated: {key} needs {info.nbytes} bytes, found {len(raw)}.")
    x = np.frombuffer(raw, dtype).reshape(info.shape)
    if info.dtype == "BF16":  # bfloat16 is the top half of a float32
        x = (x.astype(np.uint32) << 16).view(np.float32)
    return x.astype(np.float32)
