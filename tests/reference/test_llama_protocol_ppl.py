"""`elutq perplexity --protocol llama` against llama.cpp's llama-perplexity on the same file: the
SmolLM2-135M-Instruct Q4_1 GGUF, WikiText-2 test read raw (as llama-perplexity reads it), ctx 2048,
the first N windows; within 0.5% of llama-perplexity's figure.

llama-perplexity is reference tooling (scripts/fetch_llamacpp.sh builds it; a test run does not),
so its figures are stored here, measured once with
    llama-perplexity -m SmolLM2-135M-Instruct.Q4_1.gguf -f wiki.test.raw -c 2048 --chunks 4 -t 2
(llama.cpp from llama-cpp-python 0.3.36; its running estimate after chunk N is the perplexity of
the first N chunks; docs/RESULTS.md, "perplexity --protocol llama"). llama.cpp rounds the
activations of every product to 8 bits and elutq widens Q4_1 to fp32, so the two are close, not
equal.

usage: test_llama_protocol_ppl.py [--windows N] (2 or 4; default 2). Exits 77 when the GGUF or
the data is absent.
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

import smollm2_util as u  # noqa: E402

LLAMA_PERPLEXITY = {2: 20.0345, 4: 21.5098}  # running estimates [2] and [4] of the run above
TOLERANCE = 0.005  # relative


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=2, choices=sorted(LLAMA_PERPLEXITY))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    cli = os.environ.get("ELUTQ_CLI")
    if not cli or not os.path.exists(cli):
        print("ELUTQ_CLI is not set to the elutq binary; skipping")
        sys.exit(u.SKIP)
    model, wiki = u.gguf_path(), u.wikitext_path()
    cmd = [cli, "perplexity", "-m", model, "-f", wiki, "--protocol", "llama", "--ctx", "2048",
           "--max-windows", str(args.windows), "-t", str(args.threads), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{' '.join(cmd)} failed:\n{r.stderr}")
        sys.exit(1)
    f = r.stdout.split()
    ppl, windows = float(f[f.index("ppl") + 1]), int(f[f.index("windows") + 1])
    ref = LLAMA_PERPLEXITY[args.windows]
    rel = abs(ppl - ref) / ref
    print(f"elutq --protocol llama: ppl {ppl:.4f} over {windows} windows; llama-perplexity "
          f"{ref:.4f}; relative difference {rel:.2e} (tolerance {TOLERANCE:g})")
    sys.exit(0 if rel <= TOLERANCE and windows == args.windows else 1)


if __name__ == "__main__":
    main()
