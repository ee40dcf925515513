"""`elutq serve` driven by the official `openai` Python client (reference tooling), on SmolLM2:
chat and text completions, streamed and whole; greedy output equals `elutq generate`; stop
strings; usage counts; every bad request gets its status and OpenAI's error body; the API key is
enforced; a full queue answers 429 with Retry-After; a client that hangs up mid-stream leaves the
server serving the next request; SIGTERM ends the server with no request left hanging.
Exits 77 (skipped) when the CLI, SmolLM2 or the openai package is missing."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from smollm2_util import SKIP, gguf_path  # noqa: E402

try:
    import openai
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(SKIP)

CLI = os.environ.get("ELUTQ_CLI", "")
if not CLI or not os.path.exists(CLI):
    print("skip: ELUTQ_CLI (path of the elutq binary) not set")
    sys.exit(SKIP)
MODEL = gguf_path()


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([CLI, "serve", "-m", MODEL, "--port", "0", "-t", "2", *args],
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        assert m, f"no address in the server's first line: {line!r}"
        self.base = f"http://127.0.0.1:{m.group(1)}"
        self.port = int(m.group(1))

    def client(self, key="none"):
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, max_retries=0, timeout=300)

    def raw(self, path, body, headers=None):
        """(status, parsed JSON body, headers) of a POST with a raw body."""
        req = urllib.request.Request(self.base + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), dict(e.headers)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        assert code == 0, f"server exit status {code}"


def generate(prompt, n):
    out = subprocess.run([CLI, "generate", "-m", MODEL, "--chat", "-p", prompt, "--temp", "0",
                          "-n", str(n), "-t", "2"], capture_output=True, text=True, check=True)
    return out.stdout.rstrip("\n")


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok", what.split(":")[0])


def main():
    s = Server("--parallel", "2", "-c", "1024")
    try:
        c = s.client()
        msgs = [{"role": "user", "content": "Name three colors."}]
        r = c.chat.completions.create(model="x", messages=msgs, temperature=0, max_tokens=24)
        text = r.choices[0].message.content
        check(text == generate("Name three colors.", 24),
              f"greedy chat equals elutq generate: {text!r}")
        check(r.usage.completion_tokens <= 24 and r.usage.prompt_tokens > 10 and
              r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
              f"usage counts: {r.usage}")
        streamed, finish, usage = "", None, None
        for ch in c.chat.completions.create(model="x", messages=msgs, temperature=0, max_tokens=24,
                                            stream=True, stream_options={"include_usage": True}):
            if ch.choices:
                streamed += ch.choices[0].delta.content or ""
                finish = ch.choices[0].finish_reason or finish
            if ch.usage:
                usage = ch.usage
        check(streamed == text and finish == r.choices[0].finish_reason,
              f"streamed chat equals the whole answer: {streamed!r}")
        check(usage is not None and usage.completion_tokens == r.usage.completion_tokens,
              f"stream usage chunk: {usage}")
        comp = c.completions.create(model="x", prompt="The capital of France is", temperature=0,
                                    max_tokens=12)
        check(comp.choices[0].finish_reason == "length" and comp.usage.completion_tokens == 12,
              f"text completion to max_tokens: {comp.choices[0].text!r}")
        words = comp.choices[0].text.split()
        if len(words) >= 3:
            stop = " " + words[2]
            cs = c.completions.create(model="x", prompt="The capital of France is", temperature=0,
                                      max_tokens=12, stop=[stop])
            check(cs.choices[0].finish_reason == "stop" and stop not in cs.choices[0].text and
                  comp.choices[0].text.startswith(cs.choices[0].text),
                  f"stop string {stop!r}: {cs.choices[0].text!r}")
        models = c.models.list()
        check(len(models.data) == 1, f"models: {models.data}")

        # Bad requests: status and OpenAI's error shape.
        for body, status, param in [
                (b"{not json", 400, None),
                (json.dumps({"messages": "hi"}).encode(), 400, "messages"),
                (json.dumps({"messages": [{"role": "user", "content": "x"}],
                             "temperature": "hot"}).encode(), 400, "temperature"),
                (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), 400,
                 "messages[0].role"),
                (json.dumps({"messages": [{"role": "user", "content": "word " * 3000}]}).encode(),
                 400, "messages")]:
            code, err, _ = s.raw("/v1/chat/completions", body)
            check(code == status and err["error"]["type"] == "invalid_request_error" and
                  err["error"]["param"] == param, f"bad request -> {status}: {err}")
        code, err, _ = s.raw("/v1/chat/completions", json.dumps(
            {"messages": [{"role": "user", "content": "word " * 3000}]}).encode())
        check("tokens; the context holds 1024" in err["error"]["message"],
              f"too long a prompt says the numbers: {err['error']['message']}")

        # A client hangs up mid-stream; the next request is served at once.
        sock = socket.create_connection(("127.0.0.1", s.port))
        body = json.dumps({"messages": msgs, "max_tokens": 400, "stream": True}).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: " + str(len(body)).encode() +
                     b"\r\n\r\n" + body)
        # The headers and the first event may come in separate reads.
        sock.settimeout(60)
        got = b""
        while b"data:" not in got:
            part = sock.recv(4096)
            if not part:
                break
            got += part
        check(b"data:" in got, "stream opened")
        sock.close()
        t0 = time.time()
        r2 = c.chat.completions.create(model="x", messages=msgs, temperature=0, max_tokens=4)
        check(r2.choices[0].message.content and time.time() - t0 < 60,
              f"served after a disconnect in {time.time() - t0:.1f} s")
    finally:
        s.stop()
    print("ok SIGTERM: exit status 0")

    # API key.
    s = Server("--api-key", "sekrit", "-c", "512")
    try:
        try:
            s.client("wrong").models.list()
            check(False, "a wrong key is refused")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, f"a wrong key is refused: {e.status_code}")
        check(len(s.client("sekrit").models.list().data) == 1, "the right key is accepted")
    finally:
        s.stop()

    # A full queue: one slot, one waiting place; a third concurrent request gets 429.
    s = Server("--parallel", "1", "--queue", "1", "-c", "512")
    try:
        results = []
        body = json.dumps({"messages": msgs, "max_tokens": 200, "temperature": 0}).encode()

        def call():
            results.append(s.raw("/v1/chat/completions", body))
        threads = [threading.Thread(target=call) for _ in range(4)]
        # All four within a few tens of milliseconds: well inside the first request's time (its
        # prompt alone), so the slot and the waiting place are both taken when the others come.
        for t in threads:
            t.start()
            time.sleep(0.01)
        for t in threads:
            t.join()
        codes = sorted(r[0] for r in results)
        refused = [r for r in results if r[0] == 429]
        check(codes.count(200) >= 2 and refused and
              all(r[2].get("Retry-After") == "1" for r in refused) and
              all(r[1]["error"]["type"] == "rate_limit_error" for r in refused),
              f"a full queue answers 429 with Retry-After: {codes}")
    finally:
        s.stop()


if __name__ == "__main__":
    main()
