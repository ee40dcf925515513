"""Token-id parity of our byte-level BPE, read from tokenizer.json, with HF `tokenizers` on
LLaMA-3-style and Qwen2-style vocabularies trained here with the `tokenizers` library (their
published Split regexes + ByteLevel, a few thousand merges, special tokens, BOS template), saved
as tokenizer.json + tokenizer_config.json. Every WikiText-2 test line and 200 C4 documents with
decode(encode(x)) == x, plus BOS and special-token parsing on a chat-like prompt."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import tokenizer_parity_util as u  # noqa: E402

try:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
except ImportError as e:
    print(f"{e}; skipping")
    sys.exit(u.SKIP)

# The Split patterns of Meta-Llama-3 and Qwen2 tokenizer.json files.
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]


def train(folder, pattern, ignore_merges, corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4000, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    os.makedirs(folder)
    path = os.path.join(folder, "tokenizer.json")
    tok.save(path)
    if ignore_merges:  # LLaMA-3 sets this: a pre-token found in the vocabulary is one token
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        j["model"]["ignore_merges"] = True
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                   "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}, f)
    return Tokenizer.from_file(path)


_, docs = u.c4_docs(2000)
corpus = docs[1000:]  # train on documents the test does not use
failures = 0
with tempfile.TemporaryDirectory() as tmp:
    for name, pattern, ignore in [("llama3", LLAMA3, True), ("qwen2", QWEN2, False)]:
        folder = os.path.join(tmp, name)
        ref = train(folder, pattern, ignore, corpus)
        assert ref.get_vocab_size() > 3000
        failures += u.check_all(["--hf-tokenizer", folder],
                                lambda t: ref.encode(t, add_special_tokens=False).ids, name)
        # BOS from the template, special tokens parsed (HF always parses added tokens).
        prompt = "<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n<|im_start|>assistant\n"
        r = subprocess.run([u.cli(), "tokenize", "--hf-tokenizer", folder, "--parse-special",
                            "-p", prompt], capture_output=True, text=True)
        got = [int(t) for t in r.stdout.split()]
        want = ref.encode(prompt).ids
        if r.returncode != 0 or got != want:
            print(f"{name} chat prompt: ours {got} {r.stderr} reference {want}")
            failures += 1
sys.exit(1 if failures else 0)
