"""The kernel against Hugging Face transformers' own GPT-2 attention (eager, output_attentions=True)."""
import jax
import numpy as np
import pytest

from badapple_jax.kernel import attention, head_logits
from badapple_jax.layers import masked_softmax
from badapple_jax.model import pick_head
from badapple_jax.weights import load_layer


def hf_attentions(ckpt, x):  # [T, E] -> list over layers of [H, T, T]
    import torch
    from transformers import GPT2Model

    model = GPT2Model.from_pretrained(ckpt, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(inputs_embeds=torch.from_numpy(x)[None], output_attentions=True)
    return [a[0].numpy() for a in out.attentions]


@pytest.mark.parametrize("layer", [0, 1])
def test_every_head_matches_transformers(tiny_ckpt, rng, layer):
    T, E = 24, 64
    x = rng.normal(0.0, 1.0, (T, E)).astype(np.float32)
    expected = hf_attentions(tiny_ckpt, x)[layer]
    weights, info = load_layer(str(tiny_ckpt), layer)
    for head in range(info.config.n_head):
        got = np.asarray(attention(x, pick_head(weights, head)))
        np.testing.assert_allclose(got, expected[head], atol=1e-5, err_msg=f"layer {layer} head {head}")


def test_logits_are_the_attention_before_softmax(tiny_ckpt, rng):
    w = pick_head(load_layer(str(tiny_ckpt), 0)[0], 1)
    x = rng.normal(0.0, 1.0, (16, 64)).astype(np.float32)
    A = head_logits(x, w)
    assert A.shape == (16, 16)
    np.testing.assert_allclose(masked_softmax(A, True), attention(x, w), atol=1e-7)
    assert np.all(np.triu(np.asarray(attention(x, w)), 1) == 0)


def test_vmap_over_frames_equals_one_by_one(tiny_ckpt, rng):
    w = pick_head(load_layer(str(tiny_ckpt), 0)[0], 2)
    xs = rng.normal(0.0, 1.0, (3, 20, 64)).astype(np.float32)
    batched = jax.vmap(head_logits, in_axes=(0, None))(xs, w)
    for x, A in zip(xs, batched):
        np.testing.assert_allclose(A, head_logits(x, w), rtol=1e-5, atol=1e-5)
