"""Logit parity with Hugging Face transformers on randomly initialised tiny models.

For each config below, transformers builds the *ForCausalLM with fixed random weights
(torch.manual_seed), saves it with save_pretrained (safetensors) into a temp folder, and computes
the logits of a 64-token input. `elutq logits` loads the same folder and computes them once as one
batched prefill and once token by token through the KV cache (--decode). Both must satisfy
max|Δlogit| <= 1e-4 * max|logit|. The measured ratios are printed.

The configs are small but exercise the real code paths: grouped-query attention with several kv
heads, head_dim 16..64, a few layers, llama3 rope frequency scaling, q/k/v biases (Qwen2),
per-head q/k RMSNorm (Qwen3), tied and untied output embeddings, Phi-3's fused qkv_proj and
gate_up_proj (split by the loader) with its every-layer sliding window.
Exits 77 (skip) only when torch/transformers cannot be imported.
"""
import os

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
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

TOLERANCE = 1e-4
N_TOKENS = 64
VOCAB = 512

# Shared shape: 4 layers, hidden 256, 8 query heads of 32 over 2 kv heads (GQA 4:1).
BASE = dict(vocab_size=VOCAB, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
            rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)

CASES = [
    ("llama", transformers.LlamaConfig, transformers.LlamaForCausalLM, dict()),
    # head_dim 64 (4 heads over 2 kv heads), llama3 frequency scaling with a short original
    # context so that all three frequency bands (kept, interpolated, divided) occur.
    ("llama3-rope", transformers.LlamaConfig, transformers.LlamaForCausalLM,
     dict(num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
          rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                            high_freq_factor=4.0, original_max_position_embeddings=256))),
    # A sliding window of 24 < 64 tokens, so the window masking is exercised; head_dim 16 over
    # 4 kv heads.
    ("mistral-swa", transformers.MistralConfig, transformers.MistralForCausalLM,
     dict(num_attention_heads=16, num_key_value_heads=4, sliding_window=24)),
    ("qwen2-bias", transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
     dict(num_key_value_heads=4, rope_theta=1000000.0)),
    # Qwen3: head_dim set explicitly and != hidden/heads (64 * 8 = 512 != 256), q/k norm.
    ("qwen3-qknorm", transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
     dict(head_dim=64, num_key_value_heads=4)),
    ("llama-tied", transformers.LlamaConfig, transformers.LlamaForCausalLM,
     dict(tie_word_embeddings=True, num_hidden_layers=3, num_attention_heads=4,
          num_key_value_heads=4)),
    # Phi-3: q/k/v in one qkv_proj (q rows, k, v; GQA 8 over 2) and gate/up in one gate_up_proj.
    # A window of 48 < 64 tokens as Phi-3-mini's sliding_window 2047 is at long contexts. Its
    # default pad/eos ids (32000) lie outside this vocabulary, which nn.Embedding refuses.
    ("phi3-fused", transformers.Phi3Config, transformers.Phi3ForCausalLM,
     dict(sliding_window=48, pad_token_id=None, eos_token_id=None, bos_token_id=None)),
]


# Controls: the same weights with one feature switched off must give clearly different reference
# logits, so a passing comparison shows that feature was exercised (not a no-op at 64 tokens).
CONTROLS = {
    "llama3-rope": dict(rope_scaling=None),
    "mistral-swa": dict(sliding_window=None),
    "phi3-fused": dict(sliding_window=None),
}


def cli():
    c = os.environ.get("ELUTQ_CLI")
    if not c or not os.path.exists(c):
        print("ELUTQ_CLI is not set to the elutq binary; skipping")
        sys.exit(SKIP)
    return c


def make_config(config_cls, overrides):
    kw = dict(BASE)
    kw.update(overrides)
    return config_cls(**kw)


def control_ratio(config_cls, model_cls, overrides, switch_off, model, ids, ref, scale):
    """max|Δ|/max|logit| between the reference and the same weights with a feature switched off."""
    kw = dict(overrides)
    kw.update(switch_off)
    other = model_cls(make_config(config_cls, kw)).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        alt = other(torch.tensor([ids])).logits[0].double().numpy()
    return float(np.abs(alt - ref).max()) / scale


def build_model(config_cls, model_cls, overrides, seed):
    config = make_config(config_cls, overrides)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    # Default init (std 0.02) gives near-uniform logits; larger weights make the comparison
    # sensitive to every term. Norm weights move off 1 so a missing norm scale would show.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5))
    return model


def elutq_logits(folder, ids, decode, out_path):
    cmd = [cli(), "logits", "-m", folder, "--ids", " ".join(map(str, ids)), "-o", out_path, "-t", "2"]
    if decode:
        cmd.append("--decode")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("FAILED:", " ".join(cmd[:4]), "...", "\n", r.stderr)
        return None
    return np.fromfile(out_path, dtype="<f4").reshape(len(ids), -1)


def main():
    cli()
    torch.set_num_threads(2)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    rng = np.random.default_rng(1234)
    ids = [int(x) for x in rng.integers(0, VOCAB, size=N_TOKENS)]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="elutq_hf_logits_") as tmp:
        for seed, (name, config_cls, model_cls, overrides) in enumerate(CASES):
            model = build_model(config_cls, model_cls, overrides, seed)
            folder = os.path.join(tmp, name)
            model.save_pretrained(folder, safe_serialization=True)
            with torch.no_grad():
                ref = model(torch.tensor([ids])).logits[0].double().numpy()  # (n, vocab)
            scale = float(np.abs(ref).max())
            if name in CONTROLS:
                c = control_ratio(config_cls, model_cls, overrides, CONTROLS[name], model, ids,
                                  ref, scale)
                ok = c > 100 * TOLERANCE
                failures += not ok
                print(f"{name:14s} control: without {list(CONTROLS[name])[0]} the reference moves "
                      f"by {c:.2e} {'ok' if ok else 'FAIL (feature not exercised)'}")
            for mode, decode in (("prefill", False), ("decode", True)):
                got = elutq_logits(folder, ids, decode, os.path.join(tmp, f"{name}.{mode}.f32"))
                if got is None:
                    failures += 1
                    continue
                if got.shape != ref.shape:
                    print(f"{name:14s} {mode:8s} shape {got.shape} != reference {ref.shape}  FAIL")
                    failures += 1
                    continue
                ratio = float(np.abs(got - ref).max()) / scale
                ok = ratio <= TOLERANCE
                failures += not ok
                print(f"{name:14s} {mode:8s} max|dlogit|/max|logit| = {ratio:.2e} "
                      f"(max|logit| {scale:.2f})  {'ok' if ok else 'FAIL'}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; "
          f"tolerance {TOLERANCE:g}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
