"""Phi-3 as llama.cpp's GGUF files store it, and Phi-3 quantized by elutq.

A random transformers Phi3ForCausalLM (test_hf_logits.py's shapes and weights recipe: GQA 8 over 2,
sliding window 48 of 64 tokens) is written with save_pretrained and as phi3 GGUFs with the gguf
package, under the names the package's phi3 tensor map gives (qkv_proj -> blk.N.attn_qkv,
gate_up_proj -> blk.N.ffn_up holding gate rows then up rows, no ffn_gate), keys as llama.cpp's
converter writes them:
  - fp32:  every tensor F32; elutq's logits (batched and --decode) must match transformers' within
           test_hf_logits' tolerance;
  - q8_0:  the fused tensors in Q8_0 (the split views then cut GGML blocks rows); the reference
           model gets the Q8_0-rounded weights, so the same tolerance holds.
Then `elutq quantize --method hlq --bits 4 --group 32` runs on the folder and on the fp32 GGUF. Both
files must say phi3, hold the split canonical tensors (attn_q/k/v, ffn_gate/up; nothing fused), give
bit-identical logits (the same weights, whatever the source format), and stay within a loose bound
of the fp model, one that the fp model with gate and up swapped exceeds (checked here).
Exits 77 (skip) when torch/transformers/gguf or the CLI are missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import gguf
    import numpy as np
    import torch
    import transformers
except Exception as e:  # noqa: BLE001 - any import failure means the tooling is absent
    print(f"torch/transformers/gguf not importable ({e}); run scripts/setup_venv.sh; skipping")
    sys.exit(77)

from test_hf_logits import N_TOKENS, TOLERANCE, VOCAB, build_model, cli, elutq_logits  # noqa: E402

OVERRIDES = dict(sliding_window=48, pad_token_id=None, eos_token_id=None, bos_token_id=None)
# A 4-bit, group-32 HLQ model of random weights: its logits move by a fair fraction of their range
# (about 0.34), less than a misplaced row block (gate and up swapped) moves them.
QUANTIZED_MAX_REL = 0.5


def gguf_tensors(model, quantize_fused):
    """(gguf name, array, ggml type) per tensor, named by the gguf package's phi3 map."""
    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.PHI3, cfg.num_hidden_layers)
    out = []
    for hf_name, p in model.state_dict().items():
        base, suffix = hf_name.rsplit(".", 1)
        name = names.get_name(base)
        assert name, f"gguf has no phi3 name for {hf_name}"
        a = p.detach().float().numpy()
        fused = name.endswith(".attn_qkv") or name.endswith(".ffn_up")
        if quantize_fused and fused:
            out.append((f"{name}.{suffix}", gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0),
                        gguf.GGMLQuantizationType.Q8_0))
        else:
            out.append((f"{name}.{suffix}", a, gguf.GGMLQuantizationType.F32))
    return out


def write_phi3_gguf(model, path, quantize_fused):
    """The keys llama.cpp's Phi3MiniModel converter writes (4k context: no rope factor tensors)."""
    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    w = gguf.GGUFWriter(path, "phi3")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_rope_scaling_orig_ctx_len(cfg.original_max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_sliding_window(cfg.sliding_window)
    for name, a, qtype in gguf_tensors(model, quantize_fused):
        w.add_tensor(name, a, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def with_q8_0_fused_weights(model):
    """A copy of model whose fused weights are rounded through Q8_0, as the q8_0 GGUF stores them."""
    other = transformers.Phi3ForCausalLM(model.config).eval()
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("qkv_proj.weight") or k.endswith("gate_up_proj.weight"):
            q = gguf.quants.quantize(v.numpy(), gguf.GGMLQuantizationType.Q8_0)
            state[k] = torch.from_numpy(
                gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0).copy())
    other.load_state_dict(state)
    return other


def with_gate_up_swapped(model):
    """A copy of model whose gate_up_proj holds up rows first: the mistake the bound must catch."""
    other = transformers.Phi3ForCausalLM(model.config).eval()
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("gate_up_proj.weight"):
            gate, up = v.chunk(2, dim=0)
            state[k] = torch.cat([up, gate], dim=0)
    other.load_state_dict(state)
    return other


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def compare(label, got, ref, bound):
    if got is None:
        return 1
    scale = float(np.abs(ref).max())
    ratio = float(np.abs(got - ref).max()) / scale
    ok = got.shape == ref.shape and ratio <= bound
    print(f"{label:28s} max|dlogit|/max|logit| = {ratio:.2e} (bound {bound:g})  "
          f"{'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


def check_quantized_layout(path, n_layers):
    """1 failure if the file does not say phi3 or does not hold the split canonical tensors."""
    r = gguf.GGUFReader(path)

    def string(key):
        f = r.fields[key]
        return bytes(f.parts[f.data[0]]).decode()

    names = {t.name for t in r.tensors}
    want = {f"blk.{i}.{s}.weight" for i in range(n_layers)
            for s in ("attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up")}
    fused = {n for n in names if "attn_qkv" in n or "gate_up" in n}
    ok = (string("general.architecture") == "phi3" and string("elutq.architecture") == "phi3"
          and want <= names and not fused)
    print(f"{'  layout':28s} arch phi3, split tensors, nothing fused  "
          f"{'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


def quantize(src, out):
    cmd = [cli(), "quantize", src, out, "--method", "hlq", "--bits", "4", "--group", "32", "-t", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("FAILED:", " ".join(cmd), "\n", r.stderr)
    return r.returncode == 0


def main():
    cli()
    torch.set_num_threads(2)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    rng = np.random.default_rng(4321)
    ids = [int(x) for x in rng.integers(0, VOCAB, size=N_TOKENS)]
    model = build_model(transformers.Phi3Config, transformers.Phi3ForCausalLM, OVERRIDES, seed=7)
    ref = logits(model, ids)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="elutq_phi3_gguf_") as tmp:
        folder = os.path.join(tmp, "hf")
        model.save_pretrained(folder, safe_serialization=True)
        for variant, quantize_fused in (("fp32", False), ("q8_0", True)):
            path = os.path.join(tmp, f"phi3-{variant}.gguf")
            write_phi3_gguf(model, path, quantize_fused)
            want = logits(with_q8_0_fused_weights(model), ids) if quantize_fused else ref
            for mode, decode in (("prefill", False), ("decode", True)):
                got = elutq_logits(path, ids, decode, os.path.join(tmp, f"{variant}.{mode}.f32"))
                failures += compare(f"gguf {variant} {mode}", got, want, TOLERANCE)

        swapped = logits(with_gate_up_swapped(model), ids)
        control = float(np.abs(swapped - ref).max()) / float(np.abs(ref).max())
        ok = control > QUANTIZED_MAX_REL
        failures += not ok
        print(f"{'control: gate/up swapped':28s} max|dlogit|/max|logit| = {control:.2e} "
              f"{'ok (above the bound)' if ok else 'FAIL (the bound would not catch it)'}")
        quantized = {}
        for label, src in (("from-folder", folder), ("from-gguf", os.path.join(tmp, "phi3-fp32.gguf"))):
            out = os.path.join(tmp, f"phi3-hlq-w4g32-{label}.gguf")
            if not quantize(src, out):
                failures += 1
                continue
            failures += check_quantized_layout(out, model.config.num_hidden_layers)
            got = elutq_logits(out, ids, False, os.path.join(tmp, f"{label}.q.f32"))
            failures += compare(f"hlq w4g32 {label}", got, ref, QUANTIZED_MAX_REL)
            quantized[label] = got
        if len(quantized) == 2 and all(v is not None for v in quantized.values()):
            same = np.array_equal(quantized["from-folder"], quantized["from-gguf"])
            failures += not same
            print(f"{'hlq folder vs gguf source':28s} logits identical  {'ok' if same else 'FAIL'}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
