"""Whole-file perplexity of stories260K on validation_head.txt under several text protocols.

A reference tool (not a CTest test: it takes about 4 minutes on one core), behind the figures in
docs/notes/2026-11-23-foundation.md, "stories260K". It builds the model in transformers (the
conversion of test_stories260k_hf.py) and tokenizes with the independent llama2.c run.c encoder of
test_stories260k_tokenizer.py, so no elutq code is involved; windows of 512 tokens, non-overlapping,
the remainder dropped, every token after the first of a window scored (elutq's protocol).

    ELUTQ_SHARED=../shared ~/.cache/elutq/venv/bin/python tests/reference/stories260k_protocols.py
"""
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from test_stories260k_hf import load_llama2c  # noqa: E402
from test_stories260k_tokenizer import RunCEncoder  # noqa: E402
from tokenizer_parity_util import read_tokenizer_bin, shared  # noqa: E402

CTX = 512


def window_nll(model, ids):
    """(n_windows, CTX - 1) per-token -log p over non-overlapping windows."""
    n = len(ids) // CTX
    x = torch.tensor(ids[:n * CTX]).view(n, CTX)
    out = []
    with torch.no_grad():
        for b in range(0, n, 64):
            xb = x[b:b + 64]
            lp = torch.log_softmax(model(xb).logits.double(), -1)
            out.append(-lp[:, :-1].gather(-1, xb[:, 1:, None])[..., 0])
    return torch.cat(out)


def report(label, nll_sum, n):
    print(f"{label:72s} loss {nll_sum / n:.4f}  ppl {math.exp(nll_sum / n):.4f}  ({n} tokens)",
          flush=True)


def stories(paragraphs):
    """A paragraph starting "Once upon a time" begins a new story (the file marks no boundaries)."""
    out = []
    for p in paragraphs:
        if not out or p.startswith("Once upon a time"):
            out.append([p])
        else:
            out[-1].append(p)
    return out


def repair_mojibake(text):
    """Undo UTF-8 that was read as cp1252 ("â€œ" -> "“") wherever that round-trips."""
    def fix(m):
        try:
            return m.group(0).encode("cp1252").decode("utf-8")
        except UnicodeError:
            return m.group(0)
    return re.sub(r"[\u00c0-\u00ff][\u0080-\u02ff\u2000-\u21ff]+", fix, text)


def main():
    torch.set_num_threads(1)
    ckpt = shared("models/stories260K/stories260K.bin")
    model, _ = load_llama2c(ckpt)
    pieces, scores = read_tokenizer_bin(os.path.join(os.path.dirname(ckpt), "tok512.bin"), 512)
    enc = RunCEncoder(pieces, scores).encode_long  # BOS + run.c encode
    with open(shared("data/tinystories/validation_head.txt"), encoding="utf-8", newline="") as f:
        text = f.read()

    def run(label, ids):
        nll = window_nll(model, ids)
        report(label, nll.sum().item(), nll.numel())
        return nll

    nll = run('whole file, one BOS (= `elutq perplexity`)', enc(text))
    w = nll.mean(1).exp()
    print("  per-window ppl, mean of each tenth of the file:",
          [round(float(c.mean()), 2) for c in w.chunk(10)])
    paras = [p for p in text.split("\n\n") if p.strip()]
    run('paragraphs joined by "\\n", one BOS', enc("\n".join(paras)))
    st = stories(paras)
    for sep, name in (("\n", '"\\n"'), ("\n\n", '"\\n\\n"')):
        ids = [t for s in st for t in enc(sep.join(s))]
        run(f"BOS per story ({len(st)} stories), paragraphs joined by {name}", ids)
    run("BOS per paragraph", [t for p in paras for t in enc(p)])
    total, n = 0.0, 0
    per_story = []  # (mean loss, tokens, ASCII only)
    with torch.no_grad():
        for s in st:  # each story alone from its BOS, in chunks of at most CTX tokens
            d = enc("\n".join(s))
            t0, n0 = total, n
            for c in range(0, len(d) - 1, CTX - 1):
                x = torch.tensor([d[c:c + CTX]])
                if x.shape[1] < 2:
                    break
                lp = torch.log_softmax(model(x).logits.double(), -1)
                nl = -lp[0, :-1].gather(-1, x[0, 1:, None])[:, 0]
                total, n = total + nl.sum().item(), n + nl.numel()
            per_story.append(((total - t0) / (n - n0), n - n0, "\n".join(s).isascii()))
    report('each story scored alone from its BOS, paragraphs joined by "\\n"', total, n)
    for ascii_only in (True, False):
        part = [(l * k, k) for l, k, a in per_story if a == ascii_only]
        report(f"  of which the {len(part)} stories {'without' if ascii_only else 'with'} "
               "non-ASCII characters", sum(p[0] for p in part), sum(p[1] for p in part))
    losses = sorted(p[0] for p in per_story)
    print(f"  median story: ppl {math.exp(losses[len(losses) // 2]):.2f}")
    st = stories([p for p in repair_mojibake(text).split("\n\n") if p.strip()])
    run('mojibake repaired, BOS per story, paragraphs joined by "\\n"',
        [t for s in st for t in enc("\n".join(s))])


if __name__ == "__main__":
    main()
