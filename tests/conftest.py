"""Shared fixtures: tiny GPT-2 and BERT checkpoints written by transformers itself, never downloaded."""
import os
import shutil
import tempfile

import jax
import numpy as np
import pytest


# LLVM's optimisation passes are most of a CPU compile and buy nothing for the tiny programs tests run: a third off
# the suite, results within float rounding of optimised code (the golden tests hold). XLA's MLIR fusion emitters
# take twice the legacy emitters' time to compile the optimiser (6 test programs: 8.3 -> 3.7 s).
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def pytest_configure(config):
    """Every process of the suite (its workers, and the `python -m badapple_jax`, examples and benchmarks they
    start) shares one XLA compilation cache for the session: a program is compiled once per suite, not once per
    process. The first session to configure (pytest-xdist's controller) names it; its workers inherit it. A test
    that counts compiles uses a shape no other test compiles."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        config._xla_cache = tempfile.mkdtemp(prefix="badapple-jax-tests-xla-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = config._xla_cache
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # the tiny programs compile in < 1 s
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    # FAST_COMPILE: only this process's backend reads it. Children (renders interrupted mid-run, whose steps must
    # take their usual time) get the environment as it was; a test whose children only compute passes it on.
    flags = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = f"{flags or ''} {FAST_COMPILE}"
    jax.devices()  # the backend starts, reading XLA_FLAGS
    if flags is None:
        del os.environ["XLA_FLAGS"]
    else:
        os.environ["XLA_FLAGS"] = flags


def pytest_unconfigure(config):
    cache = getattr(config, "_xla_cache", None)
    if cache:
        os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        shutil.rmtree(cache, ignore_errors=True)

# initializer_range 0.2 (HF default 0.02): with n_embd 64 the weak default weights cannot reach the logit range
# a high-contrast frame needs, so an optimiser on them would stall at a loss no test can tell from a bug.
TINY = dict(n_layer=2, n_head=4, n_embd=64, n_positions=64, initializer_range=0.2)


def save_tiny_gpt2(path, seed=0, **overrides):
    """Write a random GPT-2 with `save_pretrained` (config.json + model.safetensors) to `path`."""
    import torch
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(seed)
    config = GPT2Config(**{**TINY, **overrides}, vocab_size=97, bos_token_id=0, eos_token_id=0)
    return save_randomised(GPT2Model(config), path, lambda name: ".ln_" in name or name.startswith("ln_f"))


def save_randomised(model, path, is_norm):
    """HF zero-inits biases and unit-inits LayerNorms: randomise them so every term is tested, then save."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or is_norm(name):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """Directory of a tiny random GPT-2 (2 layers, 4 heads, n_embd 64, n_positions 64)."""
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# A tiny encoder: an MLP width other than 4 n_embd and erf GELU, so the BERT block's layout is really tested.
TINY_BERT = dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=96,
                 max_position_embeddings=64, initializer_range=0.2, hidden_act="gelu")


def save_tiny_encoder(path, family="bert", seed=0):
    """Write a random BertModel (or RobertaModel) with `save_pretrained`, biases and LayerNorms randomised."""
    import torch
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

    torch.manual_seed(seed)
    if family == "roberta":  # positions count from pad_token_id + 1 = 2: two more rows than positions
        model = RobertaModel(RobertaConfig(**{**TINY_BERT, "max_position_embeddings": 66}, vocab_size=97,
                                           type_vocab_size=1, pad_token_id=1), add_pooling_layer=False)
    else:
        model = BertModel(BertConfig(**TINY_BERT, vocab_size=97), add_pooling_layer=False)
    return save_randomised(model, path, lambda name: "LayerNorm" in name)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """Directory of a tiny random BertModel (2 layers, 4 heads, hidden 64, 64 positions)."""
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny_bert"))


# Tiny decoders with rotary positions: grouped-query attention (2 kv heads of 4), llama3 rope_scaling, biases
# everywhere they can be, partial rotary and both residual layouts, so every path of the families is tested.
TINY_DECODER = {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64, "intermediate_size": 96,
                "max_position_embeddings": 64, "initializer_range": 0.2, "vocab_size": 7}
DECODERS = {
    "llama": {"num_key_value_heads": 2, "rope_theta": 500.0, "attention_bias": True, "mlp_bias": True,
              "rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 16}},
    "qwen2": {"num_key_value_heads": 2, "rope_theta": 1000.0},
    "mistral": {"num_key_value_heads": 1, "sliding_window": 32},
    "gpt_neox": {"rotary_pct": 0.5, "rotary_emb_base": 100, "use_parallel_residual": True},
    "gpt_neox sequential": {"rotary_pct": 0.5, "rotary_emb_base": 100, "use_parallel_residual": False},
}


def save_tiny_decoder(path, name, seed=0):
    """Write a random LlamaModel, Qwen2Model, MistralModel or GPTNeoXModel (DECODERS[name]) with `save_pretrained`,
    biases and norms randomised."""
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(seed)
    config = AutoConfig.for_model(name.split()[0], **TINY_DECODER, **DECODERS[name])
    return save_randomised(AutoModel.from_config(config), path, lambda n: "norm" in n)


@pytest.fixture(scope="session")
def tiny_decoders(tmp_path_factory):
    """Directories of the tiny random decoders, by DECODERS' names."""
    return {name: save_tiny_decoder(tmp_path_factory.mktemp(name.replace(" ", "_")), name) for name in DECODERS}
