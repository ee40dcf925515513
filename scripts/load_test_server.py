"""Load test of `elutq serve` on loopback: C concurrent clients each send R streamed chat requests
of mixed lengths through the openai client; reports failures, the server's peak RSS, p50/p95
time to first token and inter-token latency, aggregate generated tokens per second, the
server's own counts from /metrics and the CPU time of the server and of the clients, for each
--parallel given. Bounded in count (C x R requests) and time (--timeout per request).

usage: ~/.cache/elutq/venv/bin/python scripts/load_test_server.py --cli build/elutq \
           --model MODEL.gguf [--clients 8] [--requests 25] [--parallel 4 1] [--threads 2]
"""
import argparse
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import threading
import time
import urllib.request

import openai

PROMPTS = [
    "Name three colors.",
    "Write one sentence about the sea.",
    "Explain in a short paragraph why the sky is blue.",
    "List five animals that live in the forest and say one thing about each.",
    "Tell a short story about a robot who learns to paint, in about eight sentences.",
]


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run(cli, model, parallel, clients, requests, threads, timeout):
    proc = subprocess.Popen([cli, "serve", "-m", model, "--port", "0", "--parallel", str(parallel),
                             "--queue", str(clients * 2), "-t", str(threads), "-c", "1024"],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    port = re.search(r":(\d+)/v1", line).group(1)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0,
                           timeout=timeout)
    ttft, itl, tokens, failures = [], [], [0], []
    lock = threading.Lock()

    def worker(seed):
        rng = random.Random(seed)
        for _ in range(requests):
            prompt = rng.choice(PROMPTS)
            max_tokens = rng.choice([16, 48, 96, 160])
            t0 = time.time()
            last, first, n = None, None, 0
            try:
                for ch in client.chat.completions.create(
                        model="x", messages=[{"role": "user", "content": prompt}],
                        max_tokens=max_tokens, temperature=0.7, stream=True):
                    if ch.choices and ch.choices[0].delta.content:
                        now = time.time()
                        with lock:
                            if first is None:
                                first = now
                                ttft.append(now - t0)
                            else:
                                itl.append(now - last)
                        last = now
                        n += 1
            except Exception as e:  # a failed request is counted, not fatal
                with lock:
                    failures.append(repr(e))
                continue
            with lock:
                tokens[0] += n

    t0 = time.time()
    server_cpu0 = cpu_seconds(proc.pid)
    client_cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.time() - t0
    server_cpu = cpu_seconds(proc.pid) - server_cpu0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = ru.ru_utime + ru.ru_stime - client_cpu0.ru_utime - client_cpu0.ru_stime
    rss = peak_rss_mib(proc.pid)
    metrics = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.split()
                metrics[name] = float(value)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    print(f"--parallel {parallel}: {clients} clients x {requests} requests, "
          f"{len(failures)} failed; wall {wall:.1f} s; {tokens[0]} tokens streamed, "
          f"{tokens[0] / wall:.1f} tok/s aggregate; server peak RSS {rss:.0f} MiB")
    print(f"  time to first token p50 {percentile(ttft, .5):.3f} s p95 {percentile(ttft, .95):.3f} s;"
          f" inter-token p50 {percentile(itl, .5) * 1000:.1f} ms p95 "
          f"{percentile(itl, .95) * 1000:.1f} ms")
    if "elutq_steps_total" in metrics:  # servers before these counters lack them
        print(f"  server: {metrics['elutq_prompt_tokens_total']:.0f} prompt tokens read, "
              f"{metrics['elutq_completion_tokens_total']:.0f} generated; decode "
              f"{metrics['elutq_decode_tokens_per_second']:.1f} tok/s over its decoding steps; "
              f"{metrics['elutq_steps_total']:.0f} steps, "
              f"{metrics['elutq_forward_seconds_total']:.1f} s in the model, "
              f"{metrics['elutq_sampling_seconds_total']:.1f} s drawing tokens")
    print(f"  CPU time: server {server_cpu:.1f} s, the clients (this process) {client_cpu:.1f} s "
          f"(of {2 * wall:.0f} s on 2 cores)")
    for f in failures[:5]:
        print("  failure:", f)
    return tokens[0] / wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=25)
    ap.add_argument("--parallel", type=int, nargs="+", default=[4, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    rates = {p: run(a.cli, a.model, p, a.clients, a.requests, a.threads, a.timeout)
             for p in a.parallel}
    if len(rates) > 1:
        base = rates[min(rates)]
        for p, r in rates.items():
            print(f"aggregate tok/s with --parallel {p}: {r / base:.2f}x --parallel {min(rates)}")


if __name__ == "__main__":
    main()
