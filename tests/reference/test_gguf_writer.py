"""Checks that a GGUF written by elutq's GgufWriter is read by the `gguf` PyPI package (GGUFReader):
every key with its value type and value, every tensor with its type, shape and bytes.

The file is produced by the unit test GgufWriter.SampleForReference (tests/unit/test_gguf_writer.cpp,
run here with ELUTQ_GGUF_WRITER_SAMPLE set); the expected contents below restate what that test
writes. Exits 77 (skipped) when the test binary or the gguf package is missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as T, GGUFValueType as V
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)

CLI = os.environ.get("ELUTQ_CLI", "")
TESTS = os.path.join(os.path.dirname(CLI), "tests", "elutq_tests") if CLI else ""
if not TESTS or not os.path.exists(TESTS):
    print(f"skip: unit test binary not found (ELUTQ_CLI={CLI!r})")
    sys.exit(77)

EXPECTED_KV = {
    "general.architecture": (V.STRING, "llama"),
    "t.u8": (V.UINT8, 200),
    "t.i8": (V.INT8, -100),
    "t.u16": (V.UINT16, 60000),
    "t.i16": (V.INT16, -30000),
    "t.u32": (V.UINT32, 4000000000),
    "t.i32": (V.INT32, -2000000000),
    "t.u64": (V.UINT64, 1 << 60),
    "t.i64": (V.INT64, -(1 << 60)),
    "t.f32": (V.FLOAT32, 0.125),
    "t.f64": (V.FLOAT64, -2.5),
    "t.bool": (V.BOOL, True),
    "t.string": (V.STRING, "héllo\nworld"),
    "t.strings": (V.ARRAY, ["a b", "", "ĠĠ"]),
    "t.f32s": (V.ARRAY, [1.0, -0.5, 3.25]),
    "t.i32s": (V.ARRAY, [-1, 0, 7]),
    "t.u16s": (V.ARRAY, [1, 65535]),
}
# name -> (type, shape outermost first)
EXPECTED_TENSORS = {
    "f32.weight": (T.F32, [3, 5]),
    "q4_0.weight": (T.Q4_0, [2, 64]),
    "q6_k.weight": (T.Q6_K, [256]),
    "codes.u8": (T.I8, [7]),
    "idx.i16": (T.I16, [2, 3]),
    "idx.i32": (T.I32, [1, 2, 3, 4]),
    "f64.x": (T.F64, [3]),
    "bf16.weight": (T.BF16, [4, 2]),
}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sample.gguf")
        env = dict(os.environ, ELUTQ_GGUF_WRITER_SAMPLE=path)
        subprocess.run([TESTS, "--gtest_filter=GgufWriter.SampleForReference"], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        r = gguf.GGUFReader(path)
        keys = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
        assert set(keys) == set(EXPECTED_KV), f"keys differ: {sorted(keys)} vs {sorted(EXPECTED_KV)}"
        for k, (vt, want) in EXPECTED_KV.items():
            f = keys[k]
            assert f.types[0] == vt, f"{k}: type {f.types[0]} expected {vt}"
            got = f.contents()
            if isinstance(want, float):
                assert float(got) == want, f"{k}: {got!r} expected {want!r}"
            else:
                got = got.tolist() if hasattr(got, "tolist") else got
                assert got == want, f"{k}: {got!r} expected {want!r}"
        print(f"ok: {len(keys)} keys with their types and values")

        names = [t.name for t in r.tensors]
        assert names == list(EXPECTED_TENSORS), f"tensors {names}"
        raw = np.fromfile(path, dtype=np.uint8)
        # The writer gave f32.weight values in [0.5, 2) (top byte 0x3f): finite, as GGUFReader sees.
        f32 = next(t for t in r.tensors if t.name == "f32.weight").data
        assert np.all(np.isfinite(f32)) and np.all(np.abs(f32) < 2.0) and np.all(np.abs(f32) >= 0.5)
        for t in r.tensors:
            typ, shape = EXPECTED_TENSORS[t.name]
            assert t.tensor_type == typ, f"{t.name}: type {t.tensor_type.name}"
            # GGUFReader reports dims innermost first, as stored.
            assert list(reversed([int(x) for x in t.shape])) == shape, f"{t.name}: {t.shape}"
            assert t.data_offset % r.alignment == 0
            block, size = gguf.GGML_QUANT_SIZES[typ]
            assert int(t.n_bytes) == int(np.prod(shape)) // block * size, f"{t.name}: {t.n_bytes} bytes"
            assert t.data_offset + t.n_bytes <= raw.size, f"{t.name}: data past the end"
        print(f"ok: {len(names)} tensors with their types, shapes and aligned data")
    print("GGUFReader reads elutq's GGUF writer output")


if __name__ == "__main__":
    main()
