"""Token-id parity of our SentencePiece-BPE tokenizer with the `sentencepiece` package on the
LLaMA-2 tokenizer.model: every WikiText-2 test line and 200 C4 documents; our CLI also checks
decode(encode(x)) == x on each of them."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import tokenizer_parity_util as u  # noqa: E402

try:
    import sentencepiece
except ImportError:
    print("sentencepiece is not installed; skipping")
    sys.exit(u.SKIP)

model = u.require_file(os.path.join(u.shared_dir(), "tokenizers/llama2-32k/tokenizer.model"),
                       "LLaMA-2 tokenizer.model")
sp = sentencepiece.SentencePieceProcessor(model_file=model)
failures = u.check_all(["--spm", model], lambda t: sp.encode(t), "llama2-32k")
sys.exit(1 if failures else 0)
