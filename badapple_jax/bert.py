"""BERT-family encoders (config.json model_type "bert", "roberta"): keys, layout and block (SPEC 13).

Keys are BertModel's, with or without `bert.` (`roberta.`); nn.Linear weights are stored [out, in]
and transposed here. No causal mask: every row sees every column. Blocks are post-LN:
    h = LN_attn(x + attn(x)),   out = LN_out(h + W2 act(W1 h))
Layer 0 reads LN_emb(X + pos + type[0]), as BertModel(inputs_embeds=X, token_type_ids=0) does. To give
every layer the shape the kernel expects (a stream u, then the LayerNorm the heads read), blocks are
regrouped: block i takes u, applies its input LayerNorm (LN_emb for i = 0, else block i-1's LN_out),
and returns the stream before its own LN_out, which is the next block's input LayerNorm, or the one
the target layer's heads read. RoBERTa numbers positions from pad_token_id + 1 (2), not 0.
"""
import dataclasses

from badapple_jax.errors import BadInputError
from badapple_jax.layers import ACTIVATIONS, attend, layer_norm, linear
from badapple_jax.model import Family, LayerWeights, ModelConfig, read_config, quoted

NAMES = {"num_hidden_layers": "n_layer", "num_attention_heads": "n_head", "hidden_size": "n_embd",
         "max_position_embeddings": "n_positions", "intermediate_size": "n_inner",
         "type_vocab_size": "n_types", "vocab_size": "n_vocab"}  # config.json name -> ModelConfig field
RANDOM = {  # the shapes of real encoders (SPEC 13), for offline runs without the packaged weights
    "minilm": ModelConfig(n_layer=6, n_head=12, n_embd=384, n_positions=512, eps=1e-12, family="bert",
                          causal=False, n_inner=1536, act="gelu", n_types=2),
    "bert-base": ModelConfig(n_layer=12, n_head=12, n_embd=768, n_positions=512, eps=1e-12, family="bert",
                             causal=False, n_inner=3072, act="gelu", n_types=2),
}


VOCABULARY = "embeddings.word_embeddings.weight"


def offset(c: ModelConfig) -> int:  # the embedding row of position 0
    return 2 if c.family == "roberta" else 0


def config_of(family: str):
    def config(raw: dict, path) -> ModelConfig:
        kind = raw.get("position_embedding_type", "absolute")
        if kind != "absolute":
            raise BadInputError(f"{path}: position_embedding_type is {quoted(kind)}; only absolute positions are "
                                "supported.")
        c = read_config(raw, path, NAMES, optional=("vocab_size",), eps=("layer_norm_eps", 1e-12),
                        act=("hidden_act", "gelu"), family=family, causal=False)
        if family == "roberta":  # rows 0 and 1 of the position embedding are no position of a sequence
            if raw.get("pad_token_id", 1) != 1 or c.n_positions <= 2:
                raise BadInputError(f"{path}: expected a RoBERTa config with pad_token_id 1 and more than 2 "
                                    "max_position_embeddings.")
            c = dataclasses.replace(c, n_positions=c.n_positions - 2)
        return c
    return config


def shapes(c: ModelConfig, layer: int) -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> shape of everything `layer`'s heads read (nn.Linear as [out, in])."""
    E, I = c.n_embd, c.d_mlp
    out = {"embeddings.position_embeddings.weight": (offset(c) + c.n_positions, E),
           "embeddings.token_type_embeddings.weight": (c.n_types, E),
           "embeddings.LayerNorm.weight": (E,), "embeddings.LayerNorm.bias": (E,)}
    for i in range(layer):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            out |= {p + name + ".weight": (E, E), p + name + ".bias": (E,)}
        out |= {p + "attention.output.LayerNorm.weight": (E,), p + "attention.output.LayerNorm.bias": (E,),
                p + "intermediate.dense.weight": (I, E), p + "intermediate.dense.bias": (I,),
                p + "output.dense.weight": (E, I), p + "output.dense.bias": (E,),
                p + "output.LayerNorm.weight": (E,), p + "output.LayerNorm.bias": (E,)}
    p = f"encoder.layer.{layer}.attention.self."
    return out | {p + "query.weight": (E, E), p + "query.bias": (E,), p + "key.weight": (E, E), p + "key.bias": (E,)}


def checkpoint(c: ModelConfig, n_layer: int) -> tuple[dict, dict]:
    """Every key of a BertModel (RobertaModel) with `n_layer` layers, pooler included, and its config.json. The
    vocabulary holds only the padding token: the display feeds embeddings (inputs_embeds), never token ids."""
    E, I, pad = c.n_embd, c.d_mlp, offset(c) // 2  # RoBERTa pads with token 1, BERT with 0
    keys = {k: v for k, v in shapes(c, n_layer).items() if not k.startswith(f"encoder.layer.{n_layer}.")}
    keys |= {VOCABULARY: (pad + 1, E), "pooler.dense.weight": (E, E), "pooler.dense.bias": (E,)}
    config = {"model_type": c.family, "architectures": ["RobertaModel" if c.family == "roberta" else "BertModel"],
              "num_hidden_layers": n_layer, "num_attention_heads": c.n_head, "hidden_size": E,
              "intermediate_size": I, "max_position_embeddings": offset(c) + c.n_positions,
              "type_vocab_size": c.n_types, "layer_norm_eps": c.eps, "hidden_act": c.act,
              "position_embedding_type": "absolute", "vocab_size": pad + 1, "pad_token_id": pad}
    return keys, config


def layer(a: dict, c: ModelConfig, L: int) -> LayerWeights:
    ln = lambda name: {"g": a[name + ".weight"], "b": a[name + ".bias"]}  # noqa: E731
    lin = lambda name: {"w": a[name + ".weight"].T, "b": a[name + ".bias"]}  # noqa: E731
    ln_in = lambda i: ln("embeddings.LayerNorm" if i == 0 else f"encoder.layer.{i - 1}.output.LayerNorm")  # noqa: E731

    def block(i):
        p = f"encoder.layer.{i}."
        return {"ln_in": ln_in(i), "query": lin(p + "attention.self.query"), "key": lin(p + "attention.self.key"),
                "value": lin(p + "attention.self.value"), "out": lin(p + "attention.output.dense"),
                "ln_attn": ln(p + "attention.output.LayerNorm"), "fc": lin(p + "intermediate.dense"),
                "proj": lin(p + "output.dense")}

    pos = a["embeddings.position_embeddings.weight"][offset(c):] + a["embeddings.token_type_embeddings.weight"][0]
    q, k = lin(f"encoder.layer.{L}.attention.self.query"), lin(f"encoder.layer.{L}.attention.self.key")
    return LayerWeights(pos=pos, ln_g=ln_in(L)["g"], ln_b=ln_in(L)["b"], w_q=q["w"], b_q=q["b"], w_k=k["w"],
                        b_k=k["b"], blocks=tuple(block(i) for i in range(L)), config=c)


def block(u, p: dict, c: ModelConfig):  # [T, E] stream -> [T, E] stream before this block's LN_out
    x = layer_norm(u, p["ln_in"]["g"], p["ln_in"]["b"], c.eps)
    o = linear(attend(linear(x, p["query"]), linear(x, p["key"]), linear(x, p["value"]), c.n_head, causal=False),
               p["out"])
    h = layer_norm(x + o, p["ln_attn"]["g"], p["ln_attn"]["b"], c.eps)
    return h + linear(ACTIVATIONS[c.act](linear(h, p["fc"])), p["proj"])


def init(key: str, x, c: ModelConfig):
    """BERT's N(0, 0.02) initialisation, with LayerNorms and biases randomised too so no term vanishes."""
    if "LayerNorm" in key:
        return 1 + 0.1 * x if key.endswith(".weight") else 0.02 * x
    return 0.02 * x


FAMILIES = {
    "bert": Family(config=config_of("bert"), shapes=shapes, layer=layer, block=block, init=init,
                   checkpoint=checkpoint, vocabulary=VOCABULARY, prefixes=("bert.",), random=RANDOM),
    "roberta": Family(config=config_of("roberta"), shapes=shapes, layer=layer, block=block, init=init,
                      checkpoint=checkpoint, vocabulary=VOCABULARY, prefixes=("roberta.",)),
}
