"""stories260K (llama2.c checkpoint) against Hugging Face transformers over a full 512-token window.

The reference reads the llama2.c "v0" file with numpy (header of 7 int32, then fp32 tables, the
layout of llama2.c's export), un-permutes wq/wk from Meta's interleaved RoPE pairing to HF's
half-split one, and runs transformers' LlamaForCausalLM. elutq's llama2.c loader, interleaved RoPE
and the forward pass must give the same logits at every position of the model's whole context
(prefill and decode): max|Δlogit| <= 1e-4 * max|logit|. The input is the first 511 tokens of
../shared/data/tinystories/validation_head.txt after BOS, so it is text the model knows.
Exits 77 when the checkpoint, the data or torch/transformers are absent.
"""
import os
import subprocess
import sys
import tempfile

SKIP = 77
try:
    import numpy as np
    import torch
    import transformers
except Exception as e:  # noqa: BLE001 - any import failure means the tooling is absent
    print(f"torch/transformers not importable ({e}); run scripts/setup_venv.sh; skipping")
    sys.exit(SKIP)

from tokenizer_parity_util import shared  # noqa: E402

TOLERANCE = 1e-4


def unpermute(w, n_heads):
    """Meta/llama2.c rows pair (2i, 2i+1) within a head; HF pairs (i, i + head_dim/2)."""
    rows, cols = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, hd // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def load_llama2c(path):
    raw = np.fromfile(path, dtype="<i4", count=7)
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = (int(x) for x in raw)
    shared_cls = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    data = np.fromfile(path, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        out = data[pos:pos + n].reshape(shape)
        pos += n
        return out

    emb = take(vocab, dim)
    rms_att = take(n_layers, dim)
    wq = take(n_layers, n_heads * hd, dim)
    wk = take(n_layers, n_kv * hd, dim)
    wv = take(n_layers, n_kv * hd, dim)
    wo = take(n_layers, dim, n_heads * hd)
    rms_ffn = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    rms_final = take(dim)
    take(seq_len, hd // 2)  # freq_cis_real (unused)
    take(seq_len, hd // 2)  # freq_cis_imag (unused)
    cls = emb if shared_cls else take(vocab, dim)
    assert pos == data.size, f"{data.size - pos} floats left over: not a llama2.c v0 file?"

    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=dim, intermediate_size=hidden, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=n_kv, max_position_embeddings=seq_len,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    state = {"model.embed_tokens.weight": t(emb), "model.norm.weight": t(rms_final),
             "lm_head.weight": t(cls)}
    for i in range(n_layers):
        p = f"model.layers.{i}."
        state[p + "input_layernorm.weight"] = t(rms_att[i])
        state[p + "post_attention_layernorm.weight"] = t(rms_ffn[i])
        state[p + "self_attn.q_proj.weight"] = t(unpermute(wq[i], n_heads))
        state[p + "self_attn.k_proj.weight"] = t(unpermute(wk[i], n_kv))
        state[p + "self_attn.v_proj.weight"] = t(wv[i])
        state[p + "self_attn.o_proj.weight"] = t(wo[i])
        state[p + "mlp.gate_proj.weight"] = t(w1[i])
        state[p + "mlp.down_proj.weight"] = t(w2[i])
        state[p + "mlp.up_proj.weight"] = t(w3[i])
    model = transformers.LlamaForCausalLM(config).eval()
    model.load_state_dict(state, strict=True)
    return model, seq_len


def main():
    cli = os.environ.get("ELUTQ_CLI")
    if not cli or not os.path.exists(cli):
        print("ELUTQ_CLI is not set to the elutq binary; skipping")
        sys.exit(SKIP)
    ckpt = shared("models/stories260K/stories260K.bin")
    text_path = shared("data/tinystories/validation_head.txt")
    torch.set_num_threads(2)
    model, seq_len = load_llama2c(ckpt)
    r = subprocess.run([cli, "tokenize", "-m", ckpt, "-f", text_path], capture_output=True,
                       text=True, check=True)
    ids = [int(x) for x in r.stdout.split()][:seq_len]
    assert ids[0] == 1 and len(ids) == seq_len, "expected BOS (1) and a full window"
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].double().numpy()  # (seq_len, vocab)
    scale = float(np.abs(ref).max())
    failures = 0
    with tempfile.TemporaryDirectory(prefix="elutq_st260k_") as tmp:
        for mode, extra in (("prefill", []), ("decode", ["--decode"])):
            out = os.path.join(tmp, f"{mode}.f32")
            subprocess.run([cli, "logits", "-m", ckpt, "--ids", " ".join(map(str, ids)), "-o", out,
                            "-t", "2", *extra], check=True)
            got = np.fromfile(out, dtype="<f4").reshape(ref.shape)
            ratio = float(np.abs(got - ref).max()) / scale
            ok = ratio <= TOLERANCE
            failures += not ok
            print(f"stories260K {mode:8s} {len(ids)} tokens: max|dlogit|/max|logit| = {ratio:.2e} "
                  f"(max|logit| {scale:.2f})  {'ok' if ok else 'FAIL'}")
    # The reference's own perplexity of this window, to show the model is sane on it.
    lp = torch.log_softmax(torch.from_numpy(ref), -1)
    nll = -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean().item()
    print(f"transformers perplexity of this window: {np.exp(nll):.4f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
