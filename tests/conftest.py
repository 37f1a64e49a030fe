"""Shared fixtures: tiny GPT-2 checkpoints written by transformers itself, never downloaded."""
import numpy as np
import pytest

# initializer_range 0.2 (HF default 0.02): with n_embd 64 the weak default weights cannot reach the logit range
# a high-contrast frame needs, so an optimiser on them would stall at a loss no test can tell from a bug.
TINY = dict(n_layer=2, n_head=4, n_embd=64, n_positions=64, initializer_range=0.2)


def save_tiny_gpt2(path, seed=0, **overrides):
    """Write a random GPT-2 with `save_pretrained` (config.json + model.safetensors) to `path`."""
    import torch
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(seed)
    config = GPT2Config(**{**TINY, **overrides}, vocab_size=97, bos_token_id=0, eos_token_id=0)
    model = GPT2Model(config)
    with torch.no_grad():  # HF zero-inits biases and unit-inits LayerNorms: randomise so every term is tested
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name or name.startswith("ln_f"):
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
