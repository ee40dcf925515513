"""elutq's encoding with a llama2.c tokenizer.bin (tok512 of stories260K) against llama2.c's algorithm.

llama2.c's run.c encodes text like this, and this file re-implements it independently from that
description: look up each UTF-8 character as a piece, falling back to one byte token per byte
(id = byte + 3, the <0xNN> tokens) when it is not one; prepend the piece " " (the dummy prefix)
when the text is not empty; then repeatedly merge the adjacent pair whose concatenation is a piece
with the highest score (leftmost on ties) until no pair merges; BOS (1) first. tokenizer.bin is
int32 max_token_length, then per token float32 score, int32 length, bytes.

Checked: `elutq tokenize -m stories260K.bin` gives the same ids for the whole of
../shared/data/tinystories/validation_head.txt (393,019 ids: paragraphs, blank lines, trailing
spaces, UTF-8-read-as-cp1252 quotes such as "â€œ") and for short texts with newlines, runs of spaces, digits and
non-ASCII characters. Exits 77 when the model or the data are absent.
"""
import os
import struct
import subprocess
import sys

from tokenizer_parity_util import SKIP, read_tokenizer_bin, shared


class RunCEncoder:
    def __init__(self, pieces, scores):
        self.pieces, self.scores = pieces, scores
        self.ids = {}
        for i, p in enumerate(pieces):
            self.ids.setdefault(p, i)  # run.c's sorted lookup finds one of equal pieces; none here
        assert len(self.ids) == len(pieces), "duplicate pieces"

    def _merge(self, toks):
        while True:
            best, at, new = None, -1, -1
            for k in range(len(toks) - 1):
                j = self.ids.get(self.pieces[toks[k]] + self.pieces[toks[k + 1]])
                if j is not None and (best is None or self.scores[j] > best):
                    best, at, new = self.scores[j], k, j
            if at < 0:
                return toks
            toks[at:at + 2] = [new]

    def _chars(self, raw):
        toks, i = [], 0
        while i < len(raw):
            lead = raw[i]
            n = 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2 if lead >= 0xC0 else 1
            ch = raw[i:i + n]
            i += n
            if ch in self.ids:
                toks.append(self.ids[ch])
            else:
                toks.extend(b + 3 for b in ch)
        return toks

    def encode(self, text):
        raw = text.encode("utf-8")
        toks = ([self.ids[b" "]] if raw else []) + self._chars(raw)
        return [1] + self._merge(toks)

    def encode_long(self, text):
        """encode() for long texts: no piece contains "\\n" and the <0x0A> token's piece joins
        with nothing, so no merge crosses a newline and each line can be merged on its own."""
        out = [1]
        for k, line in enumerate(text.split("\n")):
            if k:
                out.append(b"\n"[0] + 3)
            toks = ([self.ids[b" "]] if k == 0 and text else []) + self._chars(line.encode("utf-8"))
            out += self._merge(toks)
        return out


def elutq_ids(cli, model, args):
    r = subprocess.run([cli, "tokenize", "-m", model] + args, capture_output=True, check=True)
    return [int(x) for x in r.stdout.split()]


def main():
    cli = os.environ.get("ELUTQ_CLI")
    if not cli or not os.path.exists(cli):
        print("ELUTQ_CLI is not set to the elutq binary; skipping")
        sys.exit(SKIP)
    model = shared("models/stories260K/stories260K.bin")
    text_path = shared("data/tinystories/validation_head.txt")
    vocab = abs(struct.unpack_from("<7i", open(model, "rb").read(28))[5])
    pieces, scores = read_tokenizer_bin(os.path.join(os.path.dirname(model), "tok512.bin"), vocab)
    enc = RunCEncoder(pieces, scores)
    assert not any(b"\n" in p for p in pieces[3:]), "a piece holds a newline: encode_long is wrong"
    assert pieces[13] == b"<0x0A>"

    failures = 0
    samples = ["Once upon a time", "\n\nHello\n there\n", "a  b   c ", " lead", "x\n\n\ny",
               "In 2023 she was 7.", "“Hi,” she said’s — naïve café ☃ 😀", "â€œYesâ€\x9d"]
    for s in samples:
        want, got = enc.encode(s), elutq_ids(cli, model, ["-p", s])
        if want != got:
            failures += 1
            print(f"FAIL {s!r}: run.c algorithm {want}, elutq {got}")
    with open(text_path, encoding="utf-8", newline="") as f:
        head = f.read()
    assert enc.encode_long(head[:3000]) == enc.encode(head[:3000]), "encode_long disagrees"
    with open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"elutq_tok512_{os.getpid()}.txt"),
              "w", encoding="utf-8", newline="") as f:
        f.write(head)
        tmp = f.name
    try:
        want, got = enc.encode_long(head), elutq_ids(cli, model, ["-f", tmp])
    finally:
        os.remove(tmp)
    if want != got:
        failures += 1
        at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
        print(f"FAIL validation_head.txt: {len(want)} vs {len(got)} ids, first "
              f"difference at {at}: run.c algorithm {want[at:at + 8]}, elutq {got[at:at + 8]}")
    else:
        print(f"validation_head.txt (whole file): {len(got)} ids equal")
    print("FAILED" if failures else f"OK: {len(samples)} texts and the whole file encode alike")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
