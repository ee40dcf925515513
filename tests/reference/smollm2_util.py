"""SmolLM2-135M-Instruct from its Q4_1 GGUF as a Hugging Face model, built independently of elutq:
every tensor dequantized with the `gguf` PyPI package, loaded into transformers'
LlamaForCausalLM; and its tokenizer rebuilt with HF `tokenizers` from the GGUF vocabulary.
Also the WikiText-2 perplexity protocol shared by the test and scripts/results_foundation.sh."""
import os
import subprocess
import sys

import numpy as np

SKIP = 77


def gguf_path():
    path = os.environ.get("ELUTQ_SMOLLM2") or os.path.expanduser(
        "~/.cache/elutq/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        print(f"SmolLM2-135M-Instruct Q4_1 GGUF not found at {path} (scripts/fetch_smollm2.sh); "
              "skipping")
        sys.exit(SKIP)
    return path


def wikitext_path():
    shared = os.environ.get("ELUTQ_SHARED") or os.path.join(
        os.environ.get("ELUTQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
        "..", "shared")
    path = os.path.join(shared, "data/wikitext-2-raw/wiki.test.raw")
    if not os.path.exists(path):
        print(f"WikiText-2 test not found at {path} (set ELUTQ_SHARED); skipping")
        sys.exit(SKIP)
    return path


def wikitext_joined(path):
    """The text `elutq perplexity --lines` scores: every non-empty line (without its newline) is a
    document; documents joined with "\\n\\n"."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in f.read().split("\n") if r]
    return "\n\n".join(rows)


def _field(reader, key):
    f = reader.fields[key]
    return f.contents()


def hf_tokenizer(reader):
    """SmolLM2's tokenizer from the GGUF vocabulary and merges with its published pre-tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    assert _field(reader, "tokenizer.ggml.pre") == "smollm"
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def _unpermute(w, n_heads):
    """GGUF stores q/k rows permuted so that interleaved RoPE pairs (2i, 2i+1) of a head are HF's
    half-split pairs (i, i + head_dim/2). Undo it: within each head, rows [even..., odd...]."""
    rows, cols = w.shape
    head_dim = rows // n_heads
    return (w.reshape(n_heads, head_dim // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols))


def hf_model(reader):
    """transformers LlamaForCausalLM (float32) holding the GGUF's weights, dequantized by `gguf`."""
    import torch
    import transformers
    from gguf.quants import dequantize

    a = _field(reader, "general.architecture")
    assert a == "llama", a
    g = lambda k: _field(reader, f"llama.{k}")  # noqa: E731
    n_heads, n_kv = int(g("attention.head_count")), int(g("attention.head_count_kv"))
    names = {t.name for t in reader.tensors}
    config = transformers.LlamaConfig(
        vocab_size=int(g("vocab_size")), hidden_size=int(g("embedding_length")),
        intermediate_size=int(g("feed_forward_length")), num_hidden_layers=int(g("block_count")),
        num_attention_heads=n_heads, num_key_value_heads=n_kv,
        max_position_embeddings=int(g("context_length")),
        rms_norm_eps=float(g("attention.layer_norm_rms_epsilon")),
        rope_theta=float(g("rope.freq_base")),
        tie_word_embeddings="output.weight" not in names)
    hf_names = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    per_layer = {
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    }
    state = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])  # ggml (ne0, ne1) -> numpy (ne1, ne0)
        if t.name in hf_names:
            name = hf_names[t.name]
        else:
            _, layer, kind, suffix = t.name.split(".")
            name = f"model.layers.{layer}.{per_layer[kind]}.{suffix}"
            if kind == "attn_q":
                w = _unpermute(w, n_heads)
            elif kind == "attn_k":
                w = _unpermute(w, n_kv)
        state[name] = torch.from_numpy(np.ascontiguousarray(w))
    model = transformers.LlamaForCausalLM(config).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    assert set(missing) <= allowed_missing and not unexpected, (missing, unexpected)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def hf_perplexity(model, ids, ctx, max_windows, log=None):
    """Standard protocol: non-overlapping windows of ctx tokens from position 0, every token after
    the first of each window scored. Returns (ppl, tokens scored, windows). With log (a file), one
    line per window with the running perplexity."""
    import torch
    n = len(ids) // ctx
    if max_windows > 0:
        n = min(n, max_windows)
    nll, scored = 0.0, 0
    with torch.no_grad():
        for w in range(n):
            x = torch.tensor([ids[w * ctx:(w + 1) * ctx]])
            logits = model(x).logits[0].double()  # (ctx, vocab)
            nll += float(torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:], reduction="sum"))
            scored += ctx - 1
            if log:
                print(f"window {w + 1}/{n} running ppl {np.exp(nll / scored):.4f}", file=log,
                      flush=True)
    return float(np.exp(nll / scored)), scored, n


def elutq_tokenize(cli, model_path, text_path):
    r = subprocess.run([cli, "tokenize", "-m", model_path, "-f", text_path, "--no-bos"],
                       capture_output=True, text=True, check=True)
    return [int(t) for t in r.stdout.split()]


def elutq_perplexity(cli, model_path, text_path, ctx, max_windows, threads=2):
    """Runs `elutq perplexity --lines` and returns (ppl, tokens scored, windows)."""
    cmd = [cli, "perplexity", "-m", model_path, "-f", text_path, "--lines", "--ctx", str(ctx),
           "--max-windows", str(max_windows), "-t", str(threads), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr}")
    f = r.stdout.split()
    return float(f[f.index("ppl") + 1]), int(f[f.index("scored") + 1]), int(f[f.index("windows") + 1])
