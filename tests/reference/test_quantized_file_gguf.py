"""Checks elutq's quantized model file against the `gguf` PyPI package and against docs/FORMAT.md.

The file is stories260K (llama2.c) with a different format on each projection (HLQ w2g64, uniform
w4g32, HLQ w3 whole-row, uniform w8g32, codebook w3, HLQ w4g32, uniform w2g128: both blob layouts,
ragged groups), written by the unit test QuantizedFile.SampleForReference (run here with
ELUTQ_QUANTIZED_SAMPLE set). If the CLI has an `elutq quantize` verb, its HLQ w4g32 output is checked
the same way. For each file:
  - GGUFReader lists as many tensors and keys as the GGUF header declares, all data 64-aligned;
  - the config keys equal the llama2.c header, the tokenizer keys equal tok512.bin (both parsed
    here, independently of elutq's loaders);
  - every quantized tensor is a 1-D I8 blob with elutq.tensor.<name>.format/.shape keys; decoded
    here from the layout FORMAT.md describes, it equals what `elutq tensor -o` dequantizes, bit for
    bit, and is close to the source weights; unchanged tensors are the source's bytes.
Exits 77 (skipped) when stories260K, the test binary or the gguf package is missing.
"""
import os
import struct
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

from tokenizer_parity_util import read_tokenizer_bin  # noqa: E402

CLI = os.environ.get("ELUTQ_CLI", "")
TESTS = os.path.join(os.path.dirname(CLI), "tests", "elutq_tests") if CLI else ""
SRC_DIR = os.environ.get("ELUTQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.environ.get("ELUTQ_SHARED", os.path.join(SRC_DIR, "..", "shared"))
MODEL = os.path.join(SHARED, "models", "stories260K", "stories260K.bin")
TOKENIZER = os.path.join(SHARED, "models", "stories260K", "tok512.bin")

# Relative Frobenius error of the dequantized weights against the source, by bits: generous
# bounds that still catch a transposed, shifted or mis-scaled decode (which gives ~1 or more).
MAX_REL_ERROR = {1: 0.9, 2: 0.7, 3: 0.45, 4: 0.25, 8: 0.02}


def read_llama2c(path):
    """The llama2.c checkpoint: config and fp32 weights under canonical names (row-major)."""
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // n_heads
    w = np.frombuffer(raw, dtype="<f4", offset=28)
    out, pos = {}, 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = w[pos:pos + n].reshape(shape)
        pos += n
        return a

    out["token_embd.weight"] = take(vocab, dim)
    per_layer = [("attn_norm", (dim,)), ("attn_q", (dim, dim)), ("attn_k", (n_kv * head, dim)),
                 ("attn_v", (n_kv * head, dim)), ("attn_output", (dim, dim)),
                 ("ffn_norm", (dim,)), ("ffn_gate", (hidden, dim)), ("ffn_down", (dim, hidden)),
                 ("ffn_up", (hidden, dim))]
    for name, shape in per_layer:
        for layer in range(n_layers):
            out[f"blk.{layer}.{name}.weight"] = take(*shape)
    out["output_norm.weight"] = take(dim)
    take(seq_len, head // 2)  # freq_cis_real, unused
    take(seq_len, head // 2)  # freq_cis_imag
    if not shared:
        out["output.weight"] = take(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab,
               seq_len=seq_len)
    return cfg, out


def read_tok512(path, vocab):
    raw_pieces, scores = read_tokenizer_bin(path, vocab)
    tokens = []
    for raw in raw_pieces:
        piece = raw.decode("utf-8")
        # llama2.c's export wrote "\n<s>\n" / "\n</s>\n" and spaces for SentencePiece's U+2581;
        # GGUF (and elutq) keep the SentencePiece pieces.
        piece = piece.strip("\n") if piece in ("\n<s>\n", "\n</s>\n") else piece.replace(" ", "\u2581")
        tokens.append(piece)
    return tokens, scores


def field(r, key):
    f = r.fields[key]
    v = f.contents()
    return v.tolist() if hasattr(v, "tolist") else v


def parse_format(name):
    """'hlq-w2g64' -> ('hlq', 2, 64); group 0 = whole row; codebook group 0."""
    kind, rest = name.split("-w")
    if kind == "codebook":
        return kind, int(rest), 0
    bits, group = rest.split("g")
    return kind, int(bits), 0 if group == "row" else int(group)


def decode_lut(blob):
    """LUT layout (FORMAT.md, "LUT kernel layout") -> (kind, bits, group, dequantized weights)."""
    assert bytes(blob[:8]) == b"ELUTQLP1"
    version, kind, bits, P = struct.unpack_from("<IBBB", blob, 8)
    rows, cols, group, glen, gpad, ngroups, ntiles, block_bytes = struct.unpack_from(
        "<qqiiiiqq", blob, 16)
    assert version == 1 and kind in (0, 1) and 1 <= bits <= 4
    assert P == (bits + 1 if kind == 1 else 2)
    assert len(blob) == 64 + ntiles * ngroups * block_bytes
    nq = gpad // 16
    W = np.zeros((ntiles * 32, ngroups * glen), dtype=np.float32)
    for t in range(ntiles):
        for g in range(ngroups):
            off = 64 + (t * ngroups + g) * block_bytes
            params = np.frombuffer(blob, "<f2", P * 32, off).reshape(P, 32).astype(np.float32)
            units = np.frombuffer(blob, np.uint8, nq * bits * 64, off + P * 64).reshape(nq, bits, 64)
            codes = np.zeros((32, nq * 16), dtype=np.int64)
            for half in range(2):
                nib = ((units >> (4 * half)) & 15).reshape(nq, bits, 16, 4)  # (quad, plane, row, chunk)
                for m in range(4):
                    bit = ((nib >> m) & 1).astype(np.int64)
                    for b in range(bits):
                        # column 16q + 4*chunk + m of the group, row 16*half + r
                        codes[16 * half:16 * half + 16, m::4] |= (
                            bit[:, b].transpose(1, 0, 2).reshape(16, nq * 4) << b)
            codes = codes[:, :glen]
            if kind == 1:  # HLQ: w = z + sum_b s_b bit_b
                w = np.repeat(params[bits][:, None], glen, axis=1)
                for b in range(bits):
                    w = w + params[b][:, None] * ((codes >> b) & 1)
            else:  # uniform: w = zero + scale * code
                w = params[1][:, None] + params[0][:, None] * codes
            W[32 * t:32 * t + 32, g * glen:(g + 1) * glen] = w
    return ("hlq" if kind == 1 else "uniform"), bits, group, rows, cols, W[:rows, :cols]


def decode_plain(blob):
    """Plain layout (FORMAT.md, "Quantized model file") -> same as decode_lut."""
    assert bytes(blob[:8]) == b"ELUTQPC1"
    version, kind, bits, P = struct.unpack_from("<IBBH", blob, 8)
    rows, cols, group, glen, ngroups, params_bytes, row_code_bytes = struct.unpack_from(
        "<qqiiqqq", blob, 16)
    assert version == 1 and 1 <= bits <= 8
    assert params_bytes == rows * ngroups * P * 2 and row_code_bytes == (cols * bits + 7) // 8
    codes_at = 64 + (params_bytes + 63) // 64 * 64
    assert len(blob) == codes_at + rows * row_code_bytes
    params = np.frombuffer(blob, "<f2", rows * ngroups * P, 64).reshape(rows, ngroups, P)
    params = params.astype(np.float32)
    packed = np.frombuffer(blob, np.uint8, rows * row_code_bytes, codes_at).reshape(rows, -1)
    bitstream = np.unpackbits(packed, axis=1, bitorder="little")[:, :cols * bits]
    codes = (bitstream.reshape(rows, cols, bits) << np.arange(bits)).sum(axis=2)
    if kind == 2:  # codebook: w = c[row, code]
        assert ngroups == 1 and P == 1 << bits
        W = np.take_along_axis(params[:, 0, :], codes, axis=1)
        return "codebook", bits, 0, rows, cols, W
    gi = np.arange(cols) // glen
    if kind == 0:
        W = params[:, gi, 1] + params[:, gi, 0] * codes
        return "uniform", bits, group, rows, cols, W
    W = params[:, gi, bits]
    for b in range(bits):
        W = W + params[:, gi, b] * ((codes >> b) & 1)
    return "hlq", bits, group, rows, cols, W


def check_file(path, cfg, weights, tokens, scores, tmp):
    raw = open(path, "rb").read()
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", raw, 0)
    assert magic == b"GGUF" and version == 3
    r = gguf.GGUFReader(path)
    keys = [k for k in r.fields if not k.startswith("GGUF.")]
    assert len(keys) == n_kv, f"GGUFReader lists {len(keys)} keys, the header declares {n_kv}"
    assert len(r.tensors) == n_tensors, f"{len(r.tensors)} tensors listed, {n_tensors} declared"
    assert field(r, "general.alignment") == 64
    for t in r.tensors:
        assert t.data_offset % 64 == 0, f"{t.name} data is not 64-byte aligned"

    assert field(r, "elutq.format_version") == 1
    assert field(r, "general.architecture") == "llama"
    want_cfg = {"llama.embedding_length": cfg["dim"], "llama.feed_forward_length": cfg["hidden"],
                "llama.block_count": cfg["n_layers"], "llama.attention.head_count": cfg["n_heads"],
                "llama.attention.head_count_kv": cfg["n_kv"], "llama.context_length": cfg["seq_len"],
                "llama.vocab_size": cfg["vocab"]}
    for k, v in want_cfg.items():
        assert field(r, k) == v, f"{k} = {field(r, k)}, the llama2.c header says {v}"
    # llama2.c checkpoints rotate adjacent pairs and are stored as such.
    assert field(r, "elutq.rope.pairing") == "interleaved"
    assert field(r, "tokenizer.ggml.model") == "llama"
    got_tokens = [bytes(r.fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
                  for i in r.fields["tokenizer.ggml.tokens"].data]
    assert got_tokens == tokens, "tokenizer.ggml.tokens differ from tok512.bin"
    assert np.array_equal(np.array(field(r, "tokenizer.ggml.scores"), dtype=np.float32),
                          np.array(scores, dtype=np.float32)), "token scores differ"
    print(f"ok: {n_tensors} tensors and {n_kv} keys listed; config and tokenizer match the source")

    by_name = {t.name: t for t in r.tensors}
    fmt_keys = {k[len("elutq.tensor."):-len(".format")] for k in keys
                if k.startswith("elutq.tensor.") and k.endswith(".format")}
    assert fmt_keys <= set(by_name), f"format keys without tensors: {fmt_keys - set(by_name)}"
    assert set(by_name) == set(weights), f"tensors {sorted(set(by_name) ^ set(weights))} differ"
    formats = set()
    for name, t in by_name.items():
        src = weights[name]
        if name not in fmt_keys:
            assert t.tensor_type == T.F32, f"{name}: {t.tensor_type.name}"
            assert np.array_equal(np.asarray(t.data).reshape(src.shape), src), f"{name} changed"
            continue
        assert t.tensor_type == T.I8 and len(t.shape) == 1, f"{name}: {t.tensor_type.name} {t.shape}"
        blob = np.asarray(t.data).view(np.uint8).tobytes()
        kind, bits, group, rows, cols, W = (decode_lut if blob[:8] == b"ELUTQLP1"
                                            else decode_plain)(blob)
        fmt = field(r, f"elutq.tensor.{name}.format")
        formats.add(fmt)
        assert parse_format(fmt) == (kind, bits, group), f"{name}: blob {kind} w{bits} g{group}, key {fmt}"
        assert field(r, f"elutq.tensor.{name}.shape") == [rows, cols] == list(src.shape), name
        # B <= 4 uniform / HLQ must be in the LUT layout the kernels mmap.
        assert (blob[:8] == b"ELUTQLP1") == (kind != "codebook" and bits <= 4), name
        out = os.path.join(tmp, "t.f32")
        subprocess.run([CLI, "tensor", "-m", path, name, "-o", out], check=True,
                       stdout=subprocess.DEVNULL)
        ours = np.fromfile(out, dtype="<f4").reshape(rows, cols)
        assert np.array_equal(ours, W.astype(np.float32)), f"{name}: elutq dequantizes differently"
        err = np.linalg.norm(W - src) / np.linalg.norm(src)
        assert err < MAX_REL_ERROR[bits], f"{name} ({fmt}): relative error {err:.3f} vs the source"
    print(f"ok: {len(fmt_keys)} quantized tensors ({', '.join(sorted(formats))}) decode per "
          f"docs/FORMAT.md to exactly what elutq dequantizes, close to the source weights")


def main():
    if not CLI or not os.path.exists(CLI) or not os.path.exists(TESTS):
        print(f"skip: elutq binaries not found (ELUTQ_CLI={CLI!r})")
        sys.exit(77)
    if not os.path.exists(MODEL) or not os.path.exists(TOKENIZER):
        print(f"skip: stories260K not found under {SHARED}")
        sys.exit(77)
    cfg, weights = read_llama2c(MODEL)
    tokens, scores = read_tok512(TOKENIZER, cfg["vocab"])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sample.gguf")
        env = dict(os.environ, ELUTQ_QUANTIZED_SAMPLE=path, ELUTQ_SHARED=SHARED)
        subprocess.run([TESTS, "--gtest_filter=QuantizedFile.SampleForReference"], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        check_file(path, cfg, weights, tokens, scores, tmp)
        # The quantize verb, once the CLI has it.
        help_run = subprocess.run([CLI, "quantize", "--help"], capture_output=True, text=True)
        if help_run.returncode == 0 and "--method" in help_run.stdout:
            path = os.path.join(tmp, "cli.gguf")
            subprocess.run([CLI, "quantize", MODEL, path, "--method", "hlq", "--bits", "4",
                            "--group", "32"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            check_file(path, cfg, weights, tokens, scores, tmp)
            print("ok: `elutq quantize` output checked the same way")
        else:
            print("note: no `elutq quantize` verb in this build; checked the test-written file only")
    print("GGUFReader reads elutq quantized model files; their blobs follow docs/FORMAT.md")


if __name__ == "__main__":
    main()
