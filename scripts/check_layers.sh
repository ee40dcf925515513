#!/usr/bin/env bash
# Prints the include graph of src/ by layer and fails (exit 1) on any include that points up.
# The layers are read from the elutq_add_layer(...) lines of CMakeLists.txt, the same ones the
# build enforces: a layer sees its own folders and, through BELOW, everything under the layers
# named there. usage: scripts/check_layers.sh [ROOT]
set -euo pipefail
ROOT="${1:-$(cd "$(dirname "$0")/.." && pwd)}"

declare -a layers=()      # bottom to top, as CMakeLists.txt declares them
declare -A dirs=()        # layer -> its folders under src/
declare -A below=()       # layer -> the layers directly below it
declare -A layer_of=()    # folder -> layer
while read -r line; do
  line="${line#*(}"
  line="${line%)*}"
  read -r -a words <<<"$line"
  name="${words[0]}"
  layers+=("$name")
  mode=""
  for w in "${words[@]:1}"; do
    case "$w" in
      DIRS | BELOW) mode="$w" ;;
      *) if [ "$mode" = DIRS ]; then dirs[$name]+=" $w"; layer_of[$w]="$name"; else below[$name]+=" $w"; fi ;;
    esac
  done
done < <(grep -E '^elutq_add_layer\(' "$ROOT/CMakeLists.txt")
[ "${#layers[@]}" -gt 0 ] || { echo "check_layers.sh: no elutq_add_layer lines in CMakeLists.txt" >&2; exit 2; }

# The layers a layer may include: itself and, transitively, those below it.
declare -A sees=()
for name in "${layers[@]}"; do
  s=" $name "
  for b in ${below[$name]:-}; do s+="${sees[$b]} "; done
  sees[$name]="$s"
done

# Every #include "folder/..." in src/, as "from_layer to_layer file:line".
edges=$(cd "$ROOT" && grep -rnoE '^#include "[a-z_0-9]+/' src --include='*.h' --include='*.cpp' |
  sed -E 's#^src/([^/]+)/[^:]+:([0-9]+):\#include "([^/]+)/$#\1 \3 &#' | cut -d' ' -f1-3)

declare -A count=()
violations=""
while read -r from_dir to_dir where; do
  [ -n "$from_dir" ] || continue
  from="${layer_of[$from_dir]:-?$from_dir}"
  to="${layer_of[$to_dir]:-?$to_dir}"
  count["$from $to"]=$((${count["$from $to"]:-0} + 1))
  if [[ "${sees[$from]:-}" != *" $to "* ]]; then
    allowed=$(echo ${sees[$from]:-nothing})
    violations+="  ${where%:\#include*}: $from_dir/ includes $to_dir/ (layer $from may include: $allowed)"$'\n'
  fi
done <<<"$edges"

# The matrix: a row per including layer, a column per included one, both bottom to top.
printf '%-10s' "from\\to"
for to in "${layers[@]}"; do printf '%10s' "$to"; done
printf '\n'
for from in "${layers[@]}"; do
  printf '%-10s' "$from"
  for to in "${layers[@]}"; do printf '%10s' "${count["$from $to"]:-.}"; done
  printf '   (%s)\n' "${dirs[$from]# }"
done
if [ -n "$violations" ]; then
  printf '\nIncludes that point up or sideways (fix them; see docs/ARCHITECTURE.md):\n%s' "$violations"
  exit 1
fi
echo "No include points up."
