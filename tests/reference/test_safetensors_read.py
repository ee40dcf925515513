"""Reads random tensors written by the `safetensors` package back through `elutq tensor`.

A tiny LLaMA folder (config.json + two safetensors shards + model.safetensors.index.json) is
written with the safetensors library: shard 1 with its numpy API (F32 and F16 tensors), shard 2
with its raw serializer (BF16 tensors). For every tensor, `elutq tensor -m DIR NAME -o out.f32`
must give exactly the values numpy holds. Exits 77 (skip) when the safetensors package, the CLI
or its `tensor` verb is missing.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import safetensors
    import safetensors.numpy
except ImportError:
    print("SKIP: the safetensors package is not installed (run scripts/setup_venv.sh)")
    sys.exit(77)

CLI = os.environ.get("ELUTQ_CLI", "")
if not CLI or not os.path.exists(CLI):
    print("SKIP: ELUTQ_CLI does not name the elutq binary")
    sys.exit(77)
probe = subprocess.run([CLI, "tensor", "--help"], capture_output=True, text=True)
if probe.returncode != 0:
    print("SKIP: this elutq has no `tensor` verb yet:", (probe.stdout + probe.stderr).strip()[:200])
    sys.exit(77)

HIDDEN, FF, LAYERS, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 16, 24, 2, 4, 2, 4, 32


def hf_tensors():
    """HF name -> (canonical name, shape) for the tiny config."""
    out = {
        "model.embed_tokens.weight": ("token_embd.weight", (VOCAB, HIDDEN)),
        "model.norm.weight": ("output_norm.weight", (HIDDEN,)),
        "lm_head.weight": ("output.weight", (VOCAB, HIDDEN)),
    }
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    per_layer = {
        "input_layernorm.weight": ("attn_norm.weight", (HIDDEN,)),
        "self_attn.q_proj.weight": ("attn_q.weight", (q, HIDDEN)),
        "self_attn.k_proj.weight": ("attn_k.weight", (kv, HIDDEN)),
        "self_attn.v_proj.weight": ("attn_v.weight", (kv, HIDDEN)),
        "self_attn.o_proj.weight": ("attn_output.weight", (HIDDEN, q)),
        "post_attention_layernorm.weight": ("ffn_norm.weight", (HIDDEN,)),
        "mlp.gate_proj.weight": ("ffn_gate.weight", (FF, HIDDEN)),
        "mlp.up_proj.weight": ("ffn_up.weight", (FF, HIDDEN)),
        "mlp.down_proj.weight": ("ffn_down.weight", (HIDDEN, FF)),
    }
    for layer in range(LAYERS):
        for hf, (canon, shape) in per_layer.items():
            out[f"model.layers.{layer}.{hf}"] = (f"blk.{layer}.{canon}", shape)
    return out


def to_bf16_bits(x):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (uint16)."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return bits.astype(np.uint16)


def main():
    rng = np.random.default_rng(1234)
    names = hf_tensors()
    shard1, shard2, expected = {}, [], {}
    for i, (hf, (canon, shape)) in enumerate(sorted(names.items())):
        values = rng.standard_normal(shape).astype(np.float32)
        kind = i % 3
        if kind == 0:
            shard1[hf] = values
            expected[canon] = values
        elif kind == 1:
            shard1[hf] = values.astype(np.float16)
            expected[canon] = shard1[hf].astype(np.float32)
        else:
            bits = np.ascontiguousarray(to_bf16_bits(values))
            shard2.append((hf, bits))
            expected[canon] = (bits.astype(np.uint32) << 16).view(np.float32)

    with tempfile.TemporaryDirectory() as d:
        config = {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": HIDDEN, "intermediate_size": FF, "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
            "vocab_size": VOCAB, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "tie_word_embeddings": False,
        }
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f)
        s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
        safetensors.numpy.save_file(shard1, os.path.join(d, s1))
        specs = {hf: safetensors.TensorSpec(dtype="bfloat16", shape=bits.shape,
                                             data_ptr=bits.ctypes.data, data_len=bits.nbytes)
                 for hf, bits in shard2}
        safetensors.serialize_file(specs, os.path.join(d, s2))
        weight_map = {hf: s1 for hf in shard1}
        weight_map.update({hf: s2 for hf, _ in shard2})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f)

        failures = 0
        out = os.path.join(d, "out.f32")
        for canon, want in sorted(expected.items()):
            r = subprocess.run([CLI, "tensor", "-m", d, canon, "-o", out],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL {canon}: elutq tensor exited {r.returncode}: {r.stderr.strip()}")
                failures += 1
                continue
            got = np.fromfile(out, dtype="<f4")
            if got.size != want.size or not np.array_equal(got, want.reshape(-1)):
                diff = "size %d vs %d" % (got.size, want.size) if got.size != want.size else \
                    "max |diff| %g" % np.max(np.abs(got - want.reshape(-1)))
                print(f"FAIL {canon}: values differ from what safetensors wrote ({diff})")
                failures += 1
        print(f"{len(expected) - failures} of {len(expected)} tensors identical "
              f"(F32/F16 via safetensors.numpy, BF16 via safetensors.serialize_file)")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
