"""Checks `elutq tensor -o` (our GGUF reader + dequantization) against the `gguf` PyPI package.

1. A GGUF written by gguf.GGUFWriter holds random raw blocks of every block type elutq reads that
   the gguf package can dequantize (F32, F16, BF16, Q4_0..Q8_0, Q2_K..Q6_K, the IQ types, TQ1_0,
   TQ2_0, MXFP4, NVFP4), with the fp16 scale fields replaced by finite random halves (and IQ1_M's
   split scale and MXFP4's exponent constrained) so no value is inf/nan. Our fp32 output must
   equal gguf.quants.dequantize bit for bit: both compute each weight with the same fp32
   operations in the same order. (Q8_K is elutq-readable too but the package has no
   dequantizer for it; the unit tests cover it.)
2. Several tensors of the real SmolLM2-135M-Instruct Q4_1 GGUF (if present), same criterion.
Exits 77 (skipped) when the elutq binary or the gguf package is missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as T
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)

CLI = os.environ.get("ELUTQ_CLI", "")
if not CLI or not os.path.exists(CLI):
    print("skip: ELUTQ_CLI (path of the elutq binary) not set")
    sys.exit(77)

def random_halves(rng, n, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, size=n).astype(np.float16)


def iq1m_scale(raw, rng):
    """IQ1_M's fp16 scale is the top nibbles of its four u16 scale words (bytes 48..55)."""
    d = random_halves(rng, raw.shape[0], -0.1, 0.1).view(np.uint16).astype(np.uint16)
    words = raw[:, 48:56].copy().view("<u2")  # (blocks, 4)
    for k in range(4):
        words[:, k] = (words[:, k] & 0x0FFF) | (((d >> (4 * k)) & 0xF) << 12)
    raw[:, 48:56] = words.view(np.uint8)


def mxfp4_exponent(raw, rng):
    """E8M0 exponents up to 252 keep 2^(e-127) * 6 finite; 0 and 1 (subnormal scales) always."""
    raw[:, 0] = rng.integers(0, 253, size=raw.shape[0])
    raw[:3, 0] = [0, 1, 252]


# (type, bytes per block, elements per block, byte offsets of fp16 scale fields in a block,
#  a function fixing other fields that could make values non-finite, or None)
TYPES = [
    (T.Q4_0, 18, 32, [0], None),
    (T.Q4_1, 20, 32, [0, 2], None),
    (T.Q5_0, 22, 32, [0], None),
    (T.Q5_1, 24, 32, [0, 2], None),
    (T.Q8_0, 34, 32, [0], None),
    (T.Q2_K, 84, 256, [80, 82], None),
    (T.Q3_K, 110, 256, [108], None),
    (T.Q4_K, 144, 256, [0, 2], None),
    (T.Q5_K, 176, 256, [0, 2], None),
    (T.Q6_K, 210, 256, [208], None),
    (T.IQ2_XXS, 66, 256, [0], None),
    (T.IQ2_XS, 74, 256, [0], None),
    (T.IQ2_S, 82, 256, [0], None),
    (T.IQ3_XXS, 98, 256, [0], None),
    (T.IQ3_S, 110, 256, [0], None),
    (T.IQ1_S, 50, 256, [0], None),
    (T.IQ1_M, 56, 256, [], iq1m_scale),
    (T.IQ4_NL, 18, 32, [0], None),
    (T.IQ4_XS, 136, 256, [0], None),
    (T.TQ1_0, 54, 256, [52], None),
    (T.TQ2_0, 66, 256, [64], None),
]
# Newer types, checked when the installed gguf package knows them.
if hasattr(T, "MXFP4"):
    TYPES.append((T.MXFP4, 17, 32, [], mxfp4_exponent))
if hasattr(T, "NVFP4"):
    TYPES.append((T.NVFP4, 36, 64, [], None))  # unsigned E4M3 scales: every byte is finite


def ours(path, name, tmp):
    out = os.path.join(tmp, name + ".f32")
    subprocess.run([CLI, "tensor", "-m", path, name, "-o", out], check=True,
                   stdout=subprocess.DEVNULL)
    return np.fromfile(out, dtype="<f4")


def compare(label, ref, mine):
    ref = np.asarray(ref, dtype=np.float32).reshape(-1)
    assert ref.shape == mine.shape, f"{label}: {mine.shape} values, reference has {ref.shape}"
    assert np.all(np.isfinite(ref)), f"{label}: reference has non-finite values (test bug)"
    same = ref.view(np.uint32) == mine.view(np.uint32)
    if not same.all():
        i = int(np.argmin(same))
        raise AssertionError(f"{label}: {int((~same).sum())} of {ref.size} values differ; "
                             f"first at {i}: ours {mine[i]!r} reference {ref[i]!r}")
    print(f"ok {label}: {ref.size} values bit-identical")


def synthetic(tmp):
    rng = np.random.default_rng(1234)
    path = os.path.join(tmp, "all_types.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    rows = 3
    expected = {}
    w.add_tensor("f32", rng.standard_normal((rows, 64)).astype(np.float32))
    w.add_tensor("f16", random_halves(rng, rows * 64).reshape(rows, 64))
    bf = (rng.standard_normal(rows * 64).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    w.add_tensor("bf16", bf.reshape(rows, 64).view(np.uint8).reshape(rows, 128),
                 raw_dtype=T.BF16)
    expected["bf16"] = (bf.astype(np.uint32) << 16).view(np.float32)
    for qt, bb, be, scales, fix in TYPES:
        assert gguf.constants.GGML_QUANT_SIZES[qt] == (be, bb), f"{qt.name}: block size differs"
        n_blocks = 64  # per row: enough that most IQ grid rows and sign patterns occur
        raw = rng.integers(0, 256, size=(rows * n_blocks, bb), dtype=np.uint8)
        for off in scales:
            # Positive and negative scales; dmin fields too (the formula subtracts them).
            raw[:, off:off + 2] = random_halves(rng, rows * n_blocks, -0.1, 0.1).view(
                np.uint8).reshape(-1, 2)
        if fix:
            fix(raw, rng)
        raw = raw.reshape(rows, n_blocks * bb)
        w.add_tensor(qt.name.lower(), raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(path)
    for t in r.tensors:
        ref = expected.get(t.name)
        if ref is None:
            ref = gguf.quants.dequantize(t.data, t.tensor_type)
        compare(f"synthetic {t.name} ({t.tensor_type.name})", ref, ours(path, t.name, tmp))
    return len(r.tensors)


def smollm2(tmp):
    path = os.environ.get("ELUTQ_SMOLLM2") or os.path.expanduser(
        "~/.cache/elutq/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        print("note: SmolLM2 GGUF absent (scripts/fetch_smollm2.sh); real-model part skipped")
        return
    r = gguf.GGUFReader(path)
    by_name = {t.name: t for t in r.tensors}
    for name in ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight",
                 "blk.17.ffn_down.weight", "blk.29.ffn_gate.weight", "output_norm.weight"]:
        t = by_name[name]
        compare(f"SmolLM2 {name} ({t.tensor_type.name})",
                gguf.quants.dequantize(t.data, t.tensor_type), ours(path, name, tmp))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        n = synthetic(tmp)
        assert n == 3 + len(TYPES), f"expected {3 + len(TYPES)} tensors, GGUFReader saw {n}"
        smollm2(tmp)
    print("all dequantization checks passed")


if __name__ == "__main__":
    main()
