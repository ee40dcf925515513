"""Chat prompts: what `elutq generate --chat --print-prompt` formats for SmolLM2 must equal what
Python jinja2 renders from the model's own chat template (read from the GGUF with the `gguf`
package), the way transformers' apply_chat_template does (trim_blocks, lstrip_blocks, sandboxed,
add_generation_prompt=True), with and without a system message."""
import os
import subprocess
import sys

SKIP = 77
try:
    import gguf
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError as e:
    print(f"{e}; skipping (run scripts/setup_venv.sh)")
    sys.exit(SKIP)

cli = os.environ.get("ELUTQ_CLI")
path = os.environ.get("ELUTQ_SMOLLM2") or os.path.expanduser(
    "~/.cache/elutq/models/SmolLM2-135M-Instruct.Q4_1.gguf")
if not cli or not os.path.exists(path):
    print("needs ELUTQ_CLI and the SmolLM2 GGUF (scripts/fetch_smollm2.sh); skipping")
    sys.exit(SKIP)

reader = gguf.GGUFReader(path)
f = reader.fields["tokenizer.chat_template"]
template_src = bytes(f.parts[f.data[0]]).decode("utf-8")


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.globals["raise_exception"] = raise_exception
template = env.from_string(template_src)

cases = [
    (None, "What is the capital of France?"),
    ("You are terse.", "Write a haiku\nabout  snow, please."),
    (None, "Caf\u00e9 \u4e16\u754c \U0001F600 \"quotes\" and 'apostrophes'"),
]
failures = 0
for system, user in cases:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}]
    want = template.render(messages=messages, add_generation_prompt=True, bos_token="<|im_start|>",
                           eos_token="<|im_end|>")
    args = [cli, "generate", "-m", path, "--chat", "-p", user, "--print-prompt", "-n", "0",
            "-t", "1"]
    if system:
        args += ["--system", system]
    r = subprocess.run(args, capture_output=True)
    if r.returncode != 0:
        print(f"FAIL: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
        failures += 1
        continue
    got = r.stderr.decode("utf-8").rsplit("\n[", 1)[0]
    if got != want:
        print(f"FAIL for {messages!r}:\n ours: {got!r}\n jinja2: {want!r}")
        failures += 1
    else:
        print(f"ok: {len(want)} chars")
sys.exit(1 if failures else 0)
