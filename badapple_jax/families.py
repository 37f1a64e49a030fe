"""The model families, by config.json's model_type. A new family is one module defining a `Family`
(model.py) and one line here; nothing downstream of the loader knows which family it runs."""
from badapple_jax import bert, gpt2, llama, neox
from badapple_jax.errors import BadInputError
from badapple_jax.model import Family, ModelConfig, quoted

FAMILIES: dict[str, Family] = {"gpt2": gpt2.FAMILY, **bert.FAMILIES, **llama.FAMILIES, "gpt_neox": neox.FAMILY}
RANDOM: dict[str, ModelConfig] = {name: c for f in FAMILIES.values() for name, c in f.random.items()}


def family_of(raw: dict, path) -> Family:
    """The family config.json names. GPT-2 configs written before model_type existed lack it."""
    name = raw.get("model_type", "gpt2")
    if not isinstance(name, str) or name not in FAMILIES:  # a list or a dict would be unhashable
        raise BadInputError(f"{path}: model_type {quoted(name)} is not supported; supported: {', '.join(FAMILIES)}.")
    return FAMILIES[name]
