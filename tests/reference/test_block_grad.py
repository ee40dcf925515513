"""The decoder block's backward pass (model/block_gradient.h) against PyTorch autograd.

For each variant below, transformers builds one decoder layer (LlamaDecoderLayer, Qwen2's with
q/k/v biases, Qwen3's with per-head q/k RMSNorm and head_dim != hidden/heads, Mistral's with a
sliding window shorter than the sequences) in float64 with random weights. Two sequences of
SEQ_LEN tokens, each at positions 0..SEQ_LEN-1 under a causal mask, go through it; autograd gives
the gradients of sum(y * dy) for a random dy with respect to x and every parameter. The probe
(tests/tools/block_grad_probe.cpp, path in ELUTQ_BLOCK_GRAD_PROBE) runs block_forward and
block_backward on the same numbers; y, dx and every gradient must agree to
max|probe - torch| <= TOL * max|torch| per tensor: TOL_DOUBLE for the double instantiation,
TOL_FLOAT for the float one (inputs rounded to float). The measured ratios are printed.

The reference keeps transformers' math with two adjustments, each first checked against
transformers' own result so that it removes nothing but float32 rounding, which alone would cost
~1e-7 and hide the block's own error:
- RoPE: the rotary module takes the probe's inverse frequencies (rope_inv_freq rounds
  1/theta^(2i/d) correctly where torch's float32 pow can be an ulp off), and the layer rotates by
  the probe's cos/sin tables (rope_cos_sin: float, as the block uses them). Both must agree with
  transformers' to 2.5e-7.
- RMSNorm: transformers rounds the normalised activations through float32 (for half-precision
  training); the reference runs the same formula in float64 (exact_rms_norm), after checking that
  the two agree to 1e-6.
Attention runs as sdpa, which stays in float64 (the eager path computes its softmax in float32).
Exits 77 (skip) when torch/transformers cannot be imported or the probe is not built.
"""
import os
import struct
import subprocess
import sys
import tempfile

SKIP = 77
try:
    import numpy as np
    import torch
    import transformers
    from transformers.models.llama import modeling_llama
    from transformers.models.mistral import modeling_mistral
    from transformers.models.qwen2 import modeling_qwen2
    from transformers.models.qwen3 import modeling_qwen3
except Exception as e:  # noqa: BLE001 - any import failure means the tooling is absent
    print(f"torch/transformers not importable ({e}); run scripts/setup_venv.sh; skipping")
    sys.exit(SKIP)

# Measured: <= 7e-15 in double, <= 8e-7 in float. Either float32 rounding that the
# reference removes (see above) would alone show as 1e-8..2e-7, above TOL_DOUBLE.
TOL_DOUBLE = 1e-9
TOL_FLOAT = 1e-5
N_SEQ, SEQ_LEN = 2, 9

# Shared shape: hidden 64, 4 query heads of 16 over 2 kv heads (GQA 2:1), intermediate 96.
BASE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
            vocab_size=32)

# name, config class, decoder layer class, rotary embedding class, config overrides.
VARIANTS = [
    ("llama", transformers.LlamaConfig, modeling_llama.LlamaDecoderLayer,
     modeling_llama.LlamaRotaryEmbedding, dict(rope_theta=10000.0)),
    ("qwen2", transformers.Qwen2Config, modeling_qwen2.Qwen2DecoderLayer,
     modeling_qwen2.Qwen2RotaryEmbedding, dict(rope_theta=1000000.0)),
    # head_dim 24: q is 96 wide, not the hidden size.
    ("qwen3", transformers.Qwen3Config, modeling_qwen3.Qwen3DecoderLayer,
     modeling_qwen3.Qwen3RotaryEmbedding, dict(rope_theta=1000000.0, head_dim=24)),
    # A window of 4 keys < SEQ_LEN, so the windowed rows of the backward are exercised.
    ("mistral-swa", transformers.MistralConfig, modeling_mistral.MistralDecoderLayer,
     modeling_mistral.MistralRotaryEmbedding, dict(rope_theta=10000.0, sliding_window=4)),
]

INPUT_MAGIC = b"ELQBGIN1"
OUTPUT_MAGIC = b"ELQBGOU1"


def probe():
    p = os.environ.get("ELUTQ_BLOCK_GRAD_PROBE")
    if not p or not os.path.exists(p):
        print("ELUTQ_BLOCK_GRAD_PROBE is not set to the block_grad_probe binary; skipping")
        sys.exit(SKIP)
    return p


def exact_rms_norm(norm):
    """norm's forward without its rounding through float32: the same formula, kept in float64."""
    def forward(h):
        variance = h.pow(2).mean(-1, keepdim=True)
        return norm.weight * (h * torch.rsqrt(variance + norm.variance_epsilon))
    return forward


def layer_parameters(layer):
    """(name, parameter) in BlockWeights order, as the probe reads and writes them."""
    a, m = layer.self_attn, layer.mlp
    named = [("attn_norm", layer.input_layernorm.weight),
             ("ffn_norm", layer.post_attention_layernorm.weight),
             ("Q", a.q_proj.weight), ("K", a.k_proj.weight), ("V", a.v_proj.weight),
             ("O", a.o_proj.weight), ("Gate", m.gate_proj.weight), ("Up", m.up_proj.weight),
             ("Down", m.down_proj.weight)]
    if a.q_proj.bias is not None:
        named += [("bq", a.q_proj.bias), ("bk", a.k_proj.bias), ("bv", a.v_proj.bias)]
    if hasattr(a, "q_norm"):
        named += [("q_norm", a.q_norm.weight), ("k_norm", a.k_norm.weight)]
    # Every trainable parameter of the layer must be one of the block's, or a gradient the probe
    # never computes would go unchecked.
    mapped = {id(p) for _, p in named}
    unmapped = [n for n, p in layer.named_parameters() if id(p) not in mapped]
    assert not unmapped, f"parameters without a BlockWeights slot: {unmapped}"
    return named


def build(config_cls, layer_cls, rotary_cls, overrides, seed):
    kw = dict(BASE)
    kw.update(overrides)
    cfg = config_cls(**kw)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    layer = layer_cls(cfg, layer_idx=0).to(torch.float64)
    # Weights large enough that every term matters (attention far from uniform); norm weights off
    # 1 so that a missing scale would show.
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5))
    return cfg, layer, rotary_cls(config=cfg)


def block_config(cfg, layer):
    a = layer.self_attn
    head_dim = a.head_dim
    window = getattr(cfg, "sliding_window", None) or 0
    return dict(dim=cfg.hidden_size, n_heads=cfg.num_attention_heads,
                n_kv_heads=cfg.num_key_value_heads, head_dim=head_dim,
                hidden_dim=cfg.intermediate_size, rope_style=0,  # HF rotates i with i + d/2
                attn_bias=int(a.q_proj.bias is not None), qk_norm=int(hasattr(a, "q_norm")),
                sliding_window=window, norm_eps=cfg.rms_norm_eps,
                rope_theta=cfg.rope_parameters["rope_theta"])


def write_input(path, bc, params, x, dy):
    header = INPUT_MAGIC + struct.pack(
        "<11i2d", bc["dim"], bc["n_heads"], bc["n_kv_heads"], bc["head_dim"], bc["hidden_dim"],
        bc["rope_style"], bc["attn_bias"], bc["qk_norm"], bc["sliding_window"], N_SEQ, SEQ_LEN,
        bc["norm_eps"], bc["rope_theta"])
    arrays = [p.detach().numpy() for _, p in params] + [x, dy]
    with open(path, "wb") as f:
        f.write(header)
        for a in arrays:
            f.write(np.ascontiguousarray(a, dtype="<f8").tobytes())


def run_probe(in_path, out_path, bc, params, in_float):
    """The probe's inv_freq, cos/sin tables, y, dx and gradients (by parameter name)."""
    cmd = [probe()] + (["--float"] if in_float else []) + [in_path, out_path]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    data = open(out_path, "rb").read()
    assert data[:8] == OUTPUT_MAGIC, "probe output has the wrong magic"
    (half,) = struct.unpack_from("<i", data, 8)
    assert half == bc["head_dim"] // 2, f"probe wrote {half} frequencies for head_dim {bc['head_dim']}"
    values = np.frombuffer(data, dtype="<f8", offset=12)
    act = (N_SEQ, SEQ_LEN, bc["dim"])
    shapes = [("inv_freq", (half,)), ("cos", (SEQ_LEN, half)), ("sin", (SEQ_LEN, half)),
              ("y", act), ("dx", act)] + [(n, tuple(p.shape)) for n, p in params]
    expected = sum(int(np.prod(s)) for _, s in shapes)
    assert values.size == expected, f"probe wrote {values.size} values, expected {expected}"
    out, at = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        out[name] = values[at:at + n].reshape(shape)
        at += n
    return out


def attention_mask(window):
    """(N_SEQ, 1, T, T) bool, True where query t may attend key s: s <= t, and t - s < window."""
    t = torch.arange(SEQ_LEN)
    allowed = t[None, :] <= t[:, None]
    if window:
        allowed &= (t[:, None] - t[None, :]) < window
    return allowed.expand(N_SEQ, 1, SEQ_LEN, SEQ_LEN)


def check_rope(name, rotary, probe_out):
    """transformers' own inv_freq and cos/sin against the probe's: equal up to float rounding.
    Then the rotary module takes the probe's frequencies; returns the reference's cos/sin."""
    theirs = rotary.inv_freq.double().numpy()
    ours = probe_out["inv_freq"]
    freq_rel = float(np.abs(theirs / ours - 1).max())
    rotary.inv_freq = torch.tensor(ours, dtype=torch.float32)
    positions = torch.arange(SEQ_LEN).expand(N_SEQ, SEQ_LEN)
    cos, sin = rotary(torch.zeros(1, dtype=torch.float64), positions)  # (N_SEQ, T, head_dim)
    ours_cos = np.concatenate([probe_out["cos"]] * 2, axis=-1)  # half-split: i and i + d/2
    ours_sin = np.concatenate([probe_out["sin"]] * 2, axis=-1)
    table_diff = max(float(np.abs(cos[0].numpy() - ours_cos).max()),
                     float(np.abs(sin[0].numpy() - ours_sin).max()))
    ok = freq_rel <= 2.5e-7 and table_diff <= 2.5e-7
    print(f"{name:12s} rope vs transformers: inv_freq rel {freq_rel:.1e}, cos/sin abs "
          f"{table_diff:.1e}  {'ok' if ok else 'FAIL'}")
    as_batch = lambda t: torch.tensor(t).expand(N_SEQ, SEQ_LEN, -1)  # noqa: E731
    return ok, (as_batch(ours_cos), as_batch(ours_sin))


def reference(layer, params, x_np, dy_np, position_embeddings, window):
    """y and the autograd gradients of sum(y * dy) w.r.t. x and every parameter (by name)."""
    x = torch.tensor(x_np, requires_grad=True)
    y = layer(x, attention_mask=attention_mask(window), position_embeddings=position_embeddings)
    (y * torch.tensor(dy_np)).sum().backward()
    grads = {"y": y.detach().numpy(), "dx": x.grad.numpy()}
    for name, p in params:
        grads[name] = p.grad.numpy().copy()
    return grads


def patch_norms(layer):
    """Replaces every RMSNorm's forward by exact_rms_norm after checking they agree (to float32
    rounding) on a sample: same formula, only the precision differs."""
    worst = 0.0
    for m in layer.modules():
        if hasattr(m, "variance_epsilon"):
            h = torch.randn(3, m.weight.shape[0], dtype=torch.float64)
            with torch.no_grad():
                before = m(h)
                m.forward = exact_rms_norm(m)
                after = m(h)
            worst = max(worst, float((before - after).abs().max() / after.abs().max()))
    return worst


def compare(name, mode, got, ref, names, tol):
    """Prints max|got - ref| / max|ref| of y, dx and the worst gradient; counts the failures."""
    ratios = {}
    for n in names:
        scale = float(np.abs(ref[n]).max())
        # An all-zero reference would compare nothing; NaN fails the <= below.
        ratios[n] = float(np.abs(got[n] - ref[n]).max()) / scale if scale > 0 else float("nan")
    bad = [n for n in names if not ratios[n] <= tol]
    for n in bad:
        print(f"{name:12s} {mode:6s} {n:9s} max|d|/max|ref| = {ratios[n]:.2e} > {tol:g}  FAIL")
    grads = [n for n in names if n not in ("y", "dx")]
    worst = max(grads, key=lambda n: ratios[n] if ratios[n] == ratios[n] else float("inf"))
    print(f"{name:12s} {mode:6s} y {ratios['y']:.1e}  dx {ratios['dx']:.1e}  worst gradient "
          f"{worst} {ratios[worst]:.1e}  {'FAIL' if bad else 'ok'}")
    return len(bad)


def window_control(layer, x_np, position_embeddings, window):
    """How far y moves when the window is dropped: it must matter at SEQ_LEN tokens."""
    with torch.no_grad():
        x = torch.tensor(x_np)
        a = layer(x, attention_mask=attention_mask(window), position_embeddings=position_embeddings)
        b = layer(x, attention_mask=attention_mask(0), position_embeddings=position_embeddings)
    return float((a - b).abs().max() / a.abs().max())


def main():
    probe()
    torch.set_num_threads(2)
    transformers.utils.logging.set_verbosity_error()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="elutq_block_grad_") as tmp:
        for seed, (name, config_cls, layer_cls, rotary_cls, overrides) in enumerate(VARIANTS):
            cfg, layer, rotary = build(config_cls, layer_cls, rotary_cls, overrides, seed)
            bc = block_config(cfg, layer)
            params = layer_parameters(layer)
            rng = np.random.default_rng(100 + seed)
            x = rng.standard_normal((N_SEQ, SEQ_LEN, bc["dim"]))
            dy = rng.standard_normal((N_SEQ, SEQ_LEN, bc["dim"]))
            in_path = os.path.join(tmp, f"{name}.in")
            write_input(in_path, bc, params, x, dy)
            out = {}
            for mode in ("double", "float"):
                try:
                    out[mode] = run_probe(in_path, os.path.join(tmp, f"{name}.{mode}.out"), bc,
                                          params, mode == "float")
                except (RuntimeError, AssertionError) as e:
                    print(f"{name:12s} {mode:6s} probe failed: {e}  FAIL")
            if len(out) < 2:
                failures += 1
                continue

            rope_ok, pos_emb = check_rope(name, rotary, out["double"])
            failures += not rope_ok
            norm_diff = patch_norms(layer)
            norm_ok = norm_diff <= 1e-6
            failures += not norm_ok
            if not norm_ok:
                print(f"{name:12s} float64 RMSNorm differs from transformers' by {norm_diff:.1e}"
                      "  FAIL")
            window = bc["sliding_window"]
            if window:
                c = window_control(layer, x, pos_emb, window)
                ok = c > 1e-3
                failures += not ok
                print(f"{name:12s} control: without the window y moves by {c:.1e}  "
                      f"{'ok' if ok else 'FAIL (window not exercised)'}")

            ref = reference(layer, params, x, dy, pos_emb, window)
            names = ["y", "dx"] + [n for n, _ in params]
            failures += compare(name, "double", out["double"], ref, names, TOL_DOUBLE)
            failures += compare(name, "float", out["float"], ref, names, TOL_FLOAT)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; tolerance "
          f"{TOL_DOUBLE:g} (double), {TOL_FLOAT:g} (float), per tensor max|d| / max|torch|")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
