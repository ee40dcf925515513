#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, in build-fuzz/ with clang, ASan and UBSan) and runs every
# target, or the ones named, for a time or execution budget on a copy of its seed corpus
# (fuzz/corpus/<target>/; the copy grows, the repository's corpus does not). Prints per target the
# executions, the coverage libFuzzer reached (cov: edges, ft: features) and the findings: crash,
# leak, timeout and out-of-memory inputs, which are kept in the work folder. Exits 1 if there is
# any finding, 0 otherwise, and 0 with a message when clang or libFuzzer is missing.
#
# usage: scripts/fuzz.sh [--time SECONDS | --runs N] [--work DIR] [--keep-corpus] [TARGET...]
#   --time SECONDS  per target (default 60)      --runs N  executions per target instead
#   --work DIR      where corpora, logs and findings go (default build-fuzz/work)
#   --keep-corpus   go on from the corpus an earlier run grew there (long runs in several parts)
#   TARGET          fuzz_gguf or gguf, ...; default all of fuzz/fuzz_*.cpp
# Environment: ELUTQ_FUZZ_JOBS (build jobs, default nproc), ELUTQ_FUZZ_ARGS (more libFuzzer flags).
# Reproduce a finding: build-fuzz/fuzz/fuzz_X FILE (ELUTQ_FUZZ_VERBOSE=1 prints expected Errors).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$ROOT/build-fuzz"
WORK="$BUILD/work"
budget=(-max_total_time=60)
budget_text="60 s"
targets=()
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --time) budget=(-max_total_time="$2"); budget_text="$2 s"; shift 2 ;;
    --runs) budget=(-runs="$2"); budget_text="$2 runs"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --keep-corpus) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("fuzz_${1#fuzz_}"); shift ;;
  esac
done

if ! command -v clang++ >/dev/null || ! echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
    clang++ -x c++ -fsanitize=fuzzer,address,undefined - -o /dev/null 2>/dev/null; then
  echo "fuzz.sh: SKIPPED: clang++ with libFuzzer is not installed (Debian: apt-get install clang)"
  exit 0
fi

start=$(date +%s)
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DELUTQ_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
    "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
    -DELUTQ_BUILD_TESTS=OFF -DELUTQ_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$BUILD" -j"${ELUTQ_FUZZ_JOBS:-$(nproc)}" --target fuzz_all >"$BUILD/fuzz_build.log" 2>&1 ||
  { tail -30 "$BUILD/fuzz_build.log" >&2; echo "fuzz.sh: build failed ($BUILD/fuzz_build.log)" >&2; exit 1; }
echo "fuzz.sh: built in $(( $(date +%s) - start )) s; budget $budget_text per target; work folder $WORK"

if [ ${#targets[@]} -eq 0 ]; then
  for f in "$ROOT"/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
# Options every run gets: hangs (-timeout) and memory blow-ups (-rss_limit_mb, and the same
# limit per allocation) are findings like crashes.
common=(-rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
read -r -a extra <<<"${ELUTQ_FUZZ_ARGS:-}"

total_findings=0
rows=()
for t in "${targets[@]}"; do
  bin="$BUILD/fuzz/$t"
  [ -x "$bin" ] || { echo "fuzz.sh: no target $t (have: $(cd "$BUILD/fuzz" && ls -d fuzz_* | grep -v '\.' | tr '\n' ' '))" >&2; exit 2; }
  dir="$WORK/$t"
  [ "$keep" = 1 ] || rm -rf "$dir/corpus"
  rm -f "$dir/log"
  mkdir -p "$dir/corpus" "$dir/findings"
  if [ -d "$ROOT/fuzz/corpus/$t" ]; then cp "$ROOT/fuzz/corpus/$t"/* "$dir/corpus/"; fi
  opts=("${common[@]}" "${budget[@]}" -artifact_prefix="$dir/findings/")
  [ -f "$ROOT/fuzz/dict/$t.dict" ] && opts+=(-dict="$ROOT/fuzz/dict/$t.dict")
  before=$(ls "$dir/findings" | wc -l)
  t0=$(date +%s)
  rc=0
  (cd "$dir" && UBSAN_OPTIONS=print_stacktrace=1 "$bin" "${opts[@]}" "${extra[@]}" corpus >log 2>&1) || rc=$?
  secs=$(( $(date +%s) - t0 ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  cov=$( (grep -o 'cov: [0-9]*' "$dir/log" || true) | tail -1 | cut -d' ' -f2)
  ft=$( (grep -o 'ft: [0-9]*' "$dir/log" || true) | tail -1 | cut -d' ' -f2)
  units=$(ls "$dir/corpus" | wc -l)
  found=$(( $(ls "$dir/findings" | wc -l) - before ))
  if [ "$rc" -ne 0 ] && [ "$found" -eq 0 ]; then found=1; fi  # died without writing an input
  total_findings=$(( total_findings + found ))
  rows+=("$(printf '%-22s %10s %6s %7s %7s %7s %5s %9s' "$t" "${execs:-?}" "${secs}s" "${cov:-?}" "${ft:-?}" "$units" "$rc" "$found")")
  if [ "$found" -ne 0 ]; then
    echo "fuzz.sh: $t: FINDING (exit $rc); inputs in $dir/findings/, log $dir/log:" >&2
    (grep -E 'ERROR|SUMMARY|runtime error|property violated|uncaught|deadly|Test unit written' "$dir/log" || true) | head -8 >&2
  fi
done

printf '%-22s %10s %6s %7s %7s %7s %5s %9s\n' target execs time cov ft corpus exit findings
printf '%s\n' "${rows[@]}"
echo "fuzz.sh: $total_findings finding(s); $(( $(date +%s) - start )) s in all"
[ "$total_findings" -eq 0 ]
