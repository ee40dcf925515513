#!/usr/bin/env python3
"""Makes PyPI's CUDA build of torch importable on a CPU-only machine without the GBs of nvidia-*
wheels it normally pulls in (used by scripts/setup_venv.sh for the reference venv).

torch's Linux x86_64 wheels on PyPI are all CUDA builds: libtorch_cpu.so, libtorch_cuda.so and
torch/_C link libcudart, cuBLAS, cuDNN, NCCL, ... (DT_NEEDED), so `import torch` fails when the
nvidia-* packages are absent. The CPU code paths never call into those libraries, so we satisfy
the dynamic linker with tiny stub libraries that export exactly the symbols torch imports from
them (with their ELF symbol versions). Every stub function returns 100 (cudaErrorNoDevice in the
CUDA runtime; a non-zero status, i.e. failure, in the other CUDA libraries), so torch reports
`torch.cuda.is_available() == False` and all computation stays on the CPU kernels in
libtorch_cpu.so, which are untouched.

usage: make_torch_cuda_stubs.py TORCH_PACKAGE_DIR   (e.g. .../site-packages/torch)
Needs readelf (binutils) and a C compiler (cc). Idempotent: stubs are (re)written into
TORCH_PACKAGE_DIR/lib only for libraries that cannot be found otherwise.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

# Undefined-symbol lines of `readelf --dyn-syms -W`: num value size type bind vis UND name[@ver (n)]
SYM_RE = re.compile(r"^\s*\d+:\s+\S+\s+\d+\s+(\w+)\s+(\w+)\s+\w+\s+(\S+)\s+(\S+)")


def readelf(*args):
    return subprocess.run(["readelf", *args], check=True, capture_output=True, text=True).stdout


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def needed_libs(path):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d", "-W", path))


def version_files(path):
    """Maps each required symbol-version name to the file (soname) that must define it."""
    out, current, result = readelf("-V", "-W", path), None, {}
    for line in out.splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            current = m.group(1)
            continue
        m = re.search(r"Name: (\S+)", line)
        if m and current:
            result[m.group(1)] = current
    return result


def dyn_symbols(path):
    """Yields (type, bind, section, name, version) for every dynamic symbol of an ELF file."""
    for line in readelf("--dyn-syms", "-W", path).splitlines():
        m = SYM_RE.match(line)
        if not m:
            continue
        typ, bind, ndx, full = m.groups()
        name, _, ver = full.partition("@")
        yield typ, bind, ndx, name, ver.lstrip("@")


# The C/C++ runtime libraries torch also links: taken from the system. Every other library torch
# links that it does not ship itself belongs to CUDA and gets a stub, even where a CUDA toolkit is
# installed system-wide, so the reference behaves the same on every machine.
SYSTEM_LIB_RE = re.compile(r"^(libc|libm|libdl|libpthread|librt|libutil|libstdc\+\+|libgcc_s|"
                           r"ld-linux-x86-64|ld-linux-aarch64|libz|libquadmath)\.so")


def system_library_paths():
    """soname -> path of the runtime libraries in the system's dynamic linker cache."""
    out = subprocess.run(["/sbin/ldconfig", "-p"], check=True, capture_output=True, text=True).stdout
    paths = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and SYSTEM_LIB_RE.match(m.group(1)) and ("x86-64" in m.group(2) or "64" in m.group(2)):
            paths.setdefault(m.group(1), m.group(3))
    return paths


def main():
    torch_dir = os.path.abspath(sys.argv[1])
    lib_dir = os.path.join(torch_dir, "lib")
    site = os.path.dirname(torch_dir)
    ours = sorted(glob.glob(os.path.join(lib_dir, "*.so*")) + glob.glob(os.path.join(torch_dir, "_C*.so")))
    # Stubs from an earlier run are listed here and do not count as present libraries.
    stub_list = os.path.join(lib_dir, "ELUTQ_CUDA_STUBS.txt")
    old_stubs = set(open(stub_list).read().split()) if os.path.exists(stub_list) else set()
    ours = [p for p in ours if os.path.basename(p) not in old_stubs and is_elf(p)]
    local = {os.path.basename(p): p for p in ours}
    nvidia = {os.path.basename(p): p for p in glob.glob(os.path.join(site, "nvidia", "**", "*.so*"), recursive=True)}
    system = system_library_paths()

    needed = {p: needed_libs(p) for p in ours}
    missing = sorted({n for libs in needed.values() for n in libs
                      if n not in local and n not in nvidia and not SYSTEM_LIB_RE.match(n)})
    if not missing:
        print("make_torch_cuda_stubs: nothing missing, no stubs needed")
        return 0

    # Everything defined by the libraries that do exist (torch's own and the system's).
    present = set(ours) | {system[n] for libs in needed.values() for n in libs if n in system}
    defined = set()
    for p in present:
        for typ, bind, ndx, name, ver in dyn_symbols(p):
            if ndx != "UND":
                defined.add(name)

    stubs = {m: {} for m in missing}  # soname -> {symbol: (type, version or "")}
    for p in ours:
        vfiles = version_files(p)
        lib_missing = [n for n in needed[p] if n in stubs]
        for typ, bind, ndx, name, ver in dyn_symbols(p):
            if ndx != "UND" or not name or bind == "WEAK":
                continue
            ver = re.sub(r"\s*\(\d+\)$", "", ver)
            if ver:
                soname = vfiles.get(ver)
                if soname in stubs:
                    stubs[soname][name] = (typ, ver)
            elif name not in defined and lib_missing:
                # An unversioned import nobody defines: any missing library this one links is in
                # its lookup scope, so the first one provides it.
                stubs[lib_missing[0]].setdefault(name, (typ, ""))

    with open(stub_list, "w") as f:
        f.write("\n".join(missing) + "\n")
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        for soname, syms in stubs.items():
            src = [f"/* Stub for {soname}, generated by make_torch_cuda_stubs.py: CPU-only torch. */",
                   'static const char elutq_stub_msg[] = "CUDA is not available (elutq CPU-only torch stub)";']
            versions = {}
            for i, (name, (typ, ver)) in enumerate(sorted(syms.items())):
                versions.setdefault(ver, []).append(name)
                if typ == "OBJECT":
                    src.append(f'char elutq_o{i}[256] __asm__("{name}");')
                elif typ == "TLS":
                    src.append(f'__thread char elutq_t{i}[256] __asm__("{name}");')
                elif re.search(r"Get(Error|Status)(String|Name)$", name):
                    src.append(f'const char* elutq_f{i}(void) __asm__("{name}");')
                    src.append(f"const char* elutq_f{i}(void) {{ return elutq_stub_msg; }}")
                else:
                    src.append(f'long elutq_f{i}(void) __asm__("{name}");')
                    src.append(f"long elutq_f{i}(void) {{ return 100; }}")
            c_path = os.path.join(tmp, "stub.c")
            map_path = os.path.join(tmp, "stub.map")
            with open(c_path, "w") as f:
                f.write("\n".join(src) + "\n")
            # An anonymous version node cannot sit beside named ones; unversioned imports bind to
            # a library's default version, so they join the first named node when there is one.
            named = [v for v in versions if v]
            if named and "" in versions:
                versions[named[0]] += versions.pop("")
            with open(map_path, "w") as f:
                for ver, names in versions.items():
                    body = " ".join(f'"{n}";' for n in names)
                    f.write(f"{ver} {{ global: {body} local: *; }};\n" if ver
                            else f"{{ global: {body} }};\n")
            out = os.path.join(lib_dir, soname)
            tmp_out = out + ".tmp"
            cmd = [cc, "-shared", "-fPIC", "-O1", "-o", tmp_out, c_path, f"-Wl,-soname,{soname}"]
            if syms:
                cmd.append(f"-Wl,--version-script={map_path}")
            subprocess.run(cmd, check=True)
            os.replace(tmp_out, out)
            print(f"make_torch_cuda_stubs: {soname}: {len(syms)} symbols", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
