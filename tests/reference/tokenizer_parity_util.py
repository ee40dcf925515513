"""Shared helpers for the reference tests: where the data is, reading a llama2.c tokenizer.bin,
running `elutq tokenize` over a file, and comparing its ids line by line with an independent
reference tokenizer."""
import json
import os
import struct
import subprocess
import sys

SKIP = 77


def shared_dir():
    if os.environ.get("ELUTQ_SHARED"):
        return os.environ["ELUTQ_SHARED"]
    src = os.environ.get("ELUTQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    return os.path.join(src, "..", "shared")


def cli():
    c = os.environ.get("ELUTQ_CLI")
    if not c or not os.path.exists(c):
        print("ELUTQ_CLI is not set to the elutq binary; skipping")
        sys.exit(SKIP)
    return c


def require_file(path, what):
    if not os.path.exists(path):
        print(f"{what} not found at {path}; skipping")
        sys.exit(SKIP)
    return path


def shared(rel):
    """Path of rel under the shared data folder; exits 77 (skip) when it is absent."""
    return require_file(os.path.join(shared_dir(), rel), f"{rel} (set ELUTQ_SHARED)")


def read_tokenizer_bin(path, vocab):
    """A llama2.c tokenizer.bin: int32 max_token_length, then per token float32 score, int32
    length, bytes. Returns (pieces as bytes, scores)."""
    data = open(path, "rb").read()
    off = 4  # max_token_length
    pieces, scores = [], []
    for _ in range(vocab):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off:off + n])
        off += n
        scores.append(score)
    assert off == len(data), "tokenizer.bin has bytes left over"
    return pieces, scores


def wikitext_lines():
    path = require_file(os.path.join(shared_dir(), "data/wikitext-2-raw/wiki.test.raw"), "WikiText-2 test")
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    return path, text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def c4_docs(n=200):
    path = require_file(os.path.join(shared_dir(), "data/c4/c4_validation_2k.jsonl"), "C4 validation")
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                docs.append(json.loads(line)["text"])
            if len(docs) == n:
                break
    return path, docs


def ours(tokenizer_args, text_args):
    """Runs elutq tokenize (with --check-roundtrip) and returns one id list per output line."""
    cmd = [cli(), "tokenize", *tokenizer_args, *text_args, "--no-bos", "--check-roundtrip"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("FAILED:", " ".join(cmd), "\n", r.stderr)
        sys.exit(1)
    return [[int(t) for t in line.split()] for line in r.stdout.split("\n")[:-1]]


def compare(name, got, want):
    """Prints the first mismatches; returns the number of differing documents."""
    if len(got) != len(want):
        print(f"{name}: {len(got)} output lines, expected {len(want)}")
        return max(1, abs(len(got) - len(want)))
    bad = [i for i in range(len(want)) if got[i] != want[i]]
    for i in bad[:3]:
        g, w = got[i], want[i]
        k = next((j for j in range(min(len(g), len(w))) if g[j] != w[j]), min(len(g), len(w)))
        print(f"{name}: document {i} differs at token {k}: ours {g[k:k+8]} reference {w[k:k+8]}")
    print(f"{name}: {len(want) - len(bad)}/{len(want)} documents identical")
    return len(bad)


def check_all(tokenizer_args, encode_fn, label):
    """Compares ours with encode_fn on every WikiText-2 test line and 200 C4 documents."""
    wpath, lines = wikitext_lines()
    cpath, docs = c4_docs(200)
    failures = compare(f"{label} wikitext", ours(tokenizer_args, ["-f", wpath, "--lines"]),
                       [encode_fn(l) for l in lines])
    failures += compare(f"{label} c4", ours(tokenizer_args, ["-f", cpath, "--jsonl", "--max-docs", "200"]),
                        [encode_fn(d) for d in docs])
    return failures
