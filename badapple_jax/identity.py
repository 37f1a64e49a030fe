"""The identity of a render job: the one rule for reusing work. A job's identity (`identity`) holds the options that
change a result (the optimiser's settings, the encoding's constants among them), a hash of the decoded targets, and
the model: every configuration value its family reads (`ModelConfig`) and a hash of the head's weights. Two jobs
whose identities are equal give the same results; `differences` names what differs when they are not, `grows` says
when one is the other with more frames, and `job_key` is the hash every chunk record of a job carries."""
import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import numpy as np

from badapple_jax.video import BUILT_IN

FORMAT = 4  # bump when the layout changes: an older work directory is then refused, not misread
MANIFEST_FIELDS = {"format": int, "options": dict, "input": dict, "model": dict, "chunk_size": int, "device": dict}
# Job fields that change what is optimised; output, audio and side-by-side only change the assembled video.
RESULT_OPTIONS = ("settings", "layer", "head", "heads", "color", "size", "fps", "start", "max_frames", "seed",
                  "save_embeddings")


def sha256_of(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def identity(job, clip, targets: np.ndarray, w, model_source: str) -> dict:
    """What a chunk's results depend on: the options (every setting of the optimiser and the encoding), a hash
    of the decoded targets, and the model: every configuration value its family reads and a hash of the
    head's weights."""
    options = {k: v for k, v in dataclasses.asdict(job).items() if k in RESULT_OPTIONS}
    path = Path(job.input)
    named = job.input in BUILT_IN or not path.exists()
    return json.loads(json.dumps({  # as the manifest will read back: tuples as lists, NumPy scalars as numbers
        "format": FORMAT,
        "options": {**options.pop("settings"), **options},
        "input": {"label": clip.label, "path": job.input if named else str(path.resolve()),
                  "bytes": path.stat().st_size if path.is_file() and not named else None,  # for people: not compared
                  "frames": len(targets), "sha256": sha256_of(targets)},
        "model": {"source": model_source, "config": dataclasses.asdict(w.config),
                  "sha256": sha256_of(*jax.tree.leaves(w))},
    }, default=lambda v: v.item()))


def differences(recorded: dict, wanted: dict) -> list[str]:
    """The options, input and model that differ, as "`steps` 1500 there, 8 here" phrases (options marked as
    OptionError marks them: the command line shows them as its flags)."""
    if recorded.get("format") != FORMAT:
        return [f"the layout (format {recorded.get('format')} there, {FORMAT} here)"]
    said = lambda v: "unset" if v is None else v  # noqa: E731
    options = recorded["options"]
    found = [f"`{k}` {said(options.get(k))} there, {said(v)} here"
             for k, v in wanted["options"].items() if options.get(k) != v]
    if found:
        return found  # the input and model hashes follow from these; naming them too would only repeat
    config = recorded["model"]["config"]
    found = [f"the model's {k} ({said(config.get(k))} there, {said(v)} here)"
             for k, v in wanted["model"]["config"].items() if config.get(k) != v]
    for what, name in (("input", "label"), ("model", "source")):
        if recorded[what]["sha256"] != wanted[what]["sha256"]:
            found.append(f"the {what} ({recorded[what][name]} there, {wanted[what][name]} here: not the same "
                         f"{'decoded frames' if what == 'input' else 'weights'})")
    return found


def grows(recorded: dict, wanted: dict, prefix_sha) -> bool:
    """Whether `wanted` is `recorded` with more frames of the same input: every other option and the model
    equal, and the recorded frames the first frames of the wanted ones (the same decoded bytes)."""
    n = recorded["input"].get("frames")  # checked: an edited manifest is refused as damaged, not grown
    same_model = all(recorded["model"].get(k) == wanted["model"][k] for k in ("config", "sha256"))
    if recorded.get("format") != FORMAT or not same_model or not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return False
    others = lambda m: {k: v for k, v in m["options"].items() if k != "max_frames"}  # noqa: E731
    return (others(recorded) == others(wanted) and wanted["input"]["frames"] > n
            and recorded["input"]["sha256"] == prefix_sha(n))


def complete_chunks(recorded: dict) -> list[int]:
    """The starts of the chunks of a recorded job that hold no padding: growing it keeps exactly these."""
    n, chunk = recorded["input"]["frames"], recorded["chunk_size"]
    return list(range(0, n - n % chunk, chunk))


def check_manifest(m) -> None:
    """Raise ValueError unless `m` has a manifest's fields, of its types and values."""
    if not isinstance(m, dict):
        raise ValueError("not a manifest of this program")
    for key, kind in MANIFEST_FIELDS.items():
        if not isinstance(m.get(key), kind) or isinstance(m.get(key), bool):
            raise ValueError(f"its {key} is {json.dumps(m.get(key))[:40]}, not a {kind.__name__}")
    if m["chunk_size"] < 1:
        raise ValueError(f"its chunk_size is {m['chunk_size']}")
    for what, fields in (("input", ("label", "sha256")), ("model", ("source", "sha256"))):
        if not all(isinstance(m[what].get(f), str) for f in fields):
            raise ValueError(f"its {what} lacks {' or '.join(fields)}")
    if not isinstance(m["model"].get("config"), dict):
        raise ValueError("its model lacks its config")


def job_key(manifest: dict) -> str:
    """The hash every chunk record of this job carries: of the manifest's options, identities and chunk size."""
    kept = {k: manifest[k] for k in ("format", "options", "input", "model", "chunk_size")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()
