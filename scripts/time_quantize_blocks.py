"""Times `elutq quantize` block by block: runs it with the given arguments, prints each progress
status with the seconds since the start, and stops the run once N blocks are done (the model's
remaining blocks are not quantized). For measuring a change on a large model without a full run;
the second block's start to the third's is one whole block (the first also pays for start-up).
The stopped run leaves its resume folder OUT.elutq-work behind (--restart is passed, so a later
run starts afresh); delete it when done.

usage: python3 scripts/time_quantize_blocks.py N build/elutq quantize IN OUT [quantize options]
e.g.   python3 scripts/time_quantize_blocks.py 2 build/elutq quantize qwen.gguf /tmp/q.gguf \\
           --method hlq-gptq --bits 2 --group 128 --calib c4.jsonl --nsamples 16 --seqlen 512 -t 2
"""
import re
import subprocess
import sys
import time


def main():
    if len(sys.argv) < 4 or not sys.argv[1].isdigit():
        sys.exit(__doc__)
    blocks, cmd = int(sys.argv[1]), sys.argv[2:] + ["--restart"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    buf, last = b"", None
    while True:
        c = proc.stderr.read(1)
        if not c:
            break
        if c not in b"\r\n":
            buf += c
            continue
        line, buf = buf.decode(errors="replace").strip(), b""
        status = re.sub(r"ETA [^,]*, elapsed \S+", "", line)
        if line and status != last:
            print(f"{time.time() - t0:8.1f} {status}", flush=True)
            last = status
        done = re.search(r"\] (\d+)/\d+", line)
        if done and int(done.group(1)) >= blocks:
            proc.terminate()  # SIGTERM: elutq removes its temporary output
            break
    proc.wait()
    print(f"total {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
