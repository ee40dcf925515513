#!/usr/bin/env bash
# End-to-end accuracy of the LUT kernels (docs/RESULTS.md, "LUT kernels against the dequantized
# weights"): SmolLM2-135M quantized with HLQ at w2g128 and w3g128, WikiText-2 test perplexity (ctx 2048) once
# through the bit-serial LUT kernels and once through the exact dequantization path; prints the
# relative difference. The only difference between the two runs is the kernel: the LUT path
# quantizes each group's activation tables to int8 (or int12 / int16 with LUT_TABLES), the dequant
# path multiplies in fp32.
#
# env: SPECS ("method:bits" list; default calibrated HLQ-GPTQ and data-free HLQ at 2 and 3 bits),
#      WINDOWS (default 4), NSAMPLES/SEQLEN (calibration, default 16 x 512 from C4 documents
#      1..1000, as scripts/results_accuracy.sh), THREADS (default 2), WORK (default
#      build/results_lut_vs_dequant; finished evaluations and quantized files are reused),
#      LUT_TABLES (precisions of the LUT kernels' activation tables to evaluate, --lut-tables;
#      default "int8 int12 int16": one row each).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ELUTQ="${BUILD:-$ROOT/build}/elutq"
SHARED="${ELUTQ_SHARED:-$ROOT/../shared}"
WORK="${WORK:-$ROOT/build/results_lut_vs_dequant}"
SPECS="${SPECS:-hlq-gptq:2 hlq-gptq:3 hlq:2 hlq:3}"
LUT_TABLES="${LUT_TABLES:-int8 int12 int16}"
WINDOWS="${WINDOWS:-4}" NSAMPLES="${NSAMPLES:-16}" SEQLEN="${SEQLEN:-512}" THREADS="${THREADS:-2}"
SMOL="${ELUTQ_SMOLLM2:-$HOME/.cache/elutq/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
# shellcheck source=lib/results_common.sh
source "$ROOT/scripts/lib/results_common.sh"
results_setup "$SMOL"

echo "| method | bits/group | LUT tables | ppl, LUT kernels | ppl, dequantized fp32 | relative difference |"
echo "|---|---|---|---:|---:|---:|"
for spec in $SPECS; do
  method="${spec%%:*}" bits="${spec#*:}"
  tag="$method-w${bits}g128" out="$WORK/$tag.gguf"
  calib=(--calib "$WORK/c4_calib.jsonl" --nsamples "$NSAMPLES" --seqlen "$SEQLEN")
  [[ "$method" == hlq ]] && calib=()
  [[ -f "$out" ]] || "$ELUTQ" quantize "$SMOL" "$out" --method "$method" --bits "$bits" \
    --group 128 "${calib[@]}" -t "$THREADS" -q --restart > "$WORK/$tag.quant.log" 2>&1
  log="$WORK/$tag.dequant.log"
  [[ -n "$(ppl_of "$log" 2>/dev/null)" ]] || "$ELUTQ" perplexity -m "$out" -f "$WIKI" --lines \
    -c 2048 --max-windows "$WINDOWS" --kernel dequant -t "$THREADS" -q > "$log" 2>&1
  deq="$(ppl_of "$log")"
  for tables in $LUT_TABLES; do
    # int8 keeps the log name it had before int16 tables existed, so old runs are reused.
    log="$WORK/$tag.lut.log"; [[ "$tables" == int8 ]] || log="$WORK/$tag.lut-$tables.log"
    [[ -n "$(ppl_of "$log" 2>/dev/null)" ]] || "$ELUTQ" perplexity -m "$out" -f "$WIKI" --lines \
      -c 2048 --max-windows "$WINDOWS" --kernel lut --lut-tables "$tables" -t "$THREADS" -q \
      > "$log" 2>&1
    lut="$(ppl_of "$log")"
    rel="$(awk -v a="$lut" -v b="$deq" 'BEGIN { d = (a - b) / b; printf "%.3f%%", 100 * (d < 0 ? -d : d) }')"
    label="$method"; [[ "$method" == hlq ]] && label="hlq (no calibration)"
    echo "| $label | w${bits}g128 | $tables | $lut | $deq | $rel |"
  done
done
