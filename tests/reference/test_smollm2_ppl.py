"""SmolLM2-135M-Instruct Q4_1: WikiText-2 test perplexity at ctx 2048 on the first windows, elutq vs
Hugging Face transformers on the same weights (every GGUF tensor dequantized with the `gguf` PyPI
package, q/k rows un-permuted for HF's half-split RoPE) and the same token ids; within 0.5%.

Protocol (the one `elutq perplexity --lines` implements): every non-empty line of wiki.test.raw is a
document, documents joined with "\\n\\n", tokenized once (SmolLM2 adds no BOS), non-overlapping
windows of 2048 tokens, every token after the first of each window scored. The ids the HF model
sees come from HF `tokenizers` (built from the GGUF vocabulary) and are asserted equal to those of
`elutq tokenize`.

usage: test_smollm2_ppl.py [--max-windows N] (default 2; 0 = the whole file, used by
scripts/results_foundation.sh). Exits 77 when the GGUF, the data or the tooling is absent.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

try:
    import smollm2_util as u  # needs numpy
    import gguf
    import torch
    import transformers  # noqa: F401
    import tokenizers  # noqa: F401
except Exception as e:  # noqa: BLE001 - any import failure means the tooling is absent
    print(f"reference tooling not importable ({e}); run scripts/setup_venv.sh; skipping")
    sys.exit(77)

CTX = 2048
TOLERANCE = 0.005  # relative


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-windows", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verbose", action="store_true", help="running HF perplexity per window")
    ap.add_argument("--hf-only", action="store_true",
                    help="only the transformers perplexity (no comparison; for long runs)")
    args = ap.parse_args()
    cli = os.environ.get("ELUTQ_CLI")
    if not cli or not os.path.exists(cli):
        print("ELUTQ_CLI is not set to the elutq binary; skipping")
        sys.exit(u.SKIP)
    model_path = u.gguf_path()
    wiki = u.wikitext_path()
    torch.set_num_threads(args.threads)

    reader = gguf.GGUFReader(model_path)
    text = u.wikitext_joined(wiki)
    ids = u.hf_tokenizer(reader).encode(text, add_special_tokens=False).ids
    if bool(reader.fields["tokenizer.ggml.add_bos_token"].contents()):
        ids = [int(reader.fields["tokenizer.ggml.bos_token_id"].contents())] + ids
    with tempfile.TemporaryDirectory(prefix="elutq_ppl_") as tmp:
        joined = os.path.join(tmp, "joined.txt")
        with open(joined, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        ours_ids = u.elutq_tokenize(cli, model_path, joined)
    if ours_ids != ids:
        first = next((i for i, (a, b) in enumerate(zip(ours_ids, ids)) if a != b), None)
        print(f"token ids differ: elutq {len(ours_ids)} ids, HF {len(ids)}; first difference at "
              f"{first}")
        sys.exit(1)
    print(f"{len(ids)} tokens; elutq tokenize and HF tokenizers agree on every id")

    if args.hf_only:
        t0 = time.time()
        ppl, scored, windows = u.hf_perplexity(u.hf_model(reader), ids, CTX, args.max_windows,
                                               sys.stderr if args.verbose else None)
        print(f"transformers:     ppl {ppl:.4f} ({windows} windows, {scored} tokens scored, "
              f"{time.time() - t0:.1f} s)")
        return
    t0 = time.time()
    ours_ppl, ours_scored, ours_windows = u.elutq_perplexity(cli, model_path, wiki, CTX,
                                                             args.max_windows, args.threads)
    t1 = time.time()
    model = u.hf_model(reader)
    ref_ppl, ref_scored, ref_windows = u.hf_perplexity(model, ids, CTX, args.max_windows,
                                                       sys.stderr if args.verbose else None)
    t2 = time.time()
    rel = abs(ours_ppl - ref_ppl) / ref_ppl
    print(f"elutq perplexity: ppl {ours_ppl:.4f} ({ours_windows} windows, {ours_scored} tokens "
          f"scored, {t1 - t0:.1f} s)")
    print(f"transformers:     ppl {ref_ppl:.4f} ({ref_windows} windows, {ref_scored} tokens "
          f"scored, {t2 - t1:.1f} s)")
    print(f"relative difference {rel:.2e} (tolerance {TOLERANCE:g})")
    ok = rel <= TOLERANCE and ours_scored == ref_scored and ours_windows == ref_windows
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
