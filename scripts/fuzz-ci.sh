#!/usr/bin/env bash
# Bounded libFuzzer run of every target (make fuzz-ci, part of make test; make fuzz with longer SECONDS).
#   scripts/fuzz-ci.sh FUZZ_BUILD_DIR SECONDS [TARGET...]
# Each target runs SECONDS on its committed seeds tests/fuzz/corpus/<t>, read-only: libFuzzer writes new units to
# the FIRST corpus directory, which is the scratch FUZZ_BUILD_DIR/fuzz-ci/<t>/corpus. Any crash, leak, timeout or
# out-of-memory fails the run and names the input that caused it (FUZZ_BUILD_DIR/fuzz-ci/<t>/crash-*, ...).
# One JSON line per target goes to FUZZ_BUILD_DIR/fuzz-stats.jsonl (appended: the file adds up executions over
# runs), and a table is printed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -lt 2 ]; then
  echo "usage: $0 FUZZ_BUILD_DIR SECONDS [TARGET...]" >&2
  exit 2
fi
dir=$1 secs=$2
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_v1 fuzz_v2 fuzz_codec fuzz_scanmeta fuzz_config fuzz_safetensors fuzz_h5scan
                                    fuzz_h5volume fuzz_control fuzz_sealed)
# -max_len per target: the largest meaningful input (stream messages carry frames; HDF5 descriptions are small)
declare -A maxlen=([fuzz_v1]=65536 [fuzz_v2]=65536 [fuzz_codec]=65536 [fuzz_scanmeta]=16384 [fuzz_config]=16384
                   [fuzz_safetensors]=16384 [fuzz_h5scan]=8192 [fuzz_h5volume]=4096 [fuzz_control]=4096
                   [fuzz_sealed]=16384)
stats=$dir/fuzz-stats.jsonl
fail=0
rows=()
for t in "${targets[@]}"; do
  bin=$dir/tests/fuzz/$t seeds=$here/tests/fuzz/corpus/$t work=$dir/fuzz-ci/$t
  if [ ! -x "$bin" ] || [ ! -d "$seeds" ]; then
    echo "fuzz-ci: $t: no binary $bin or no seeds $seeds" >&2
    exit 2
  fi
  mkdir -p "$work/corpus"
  rm -f "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*
  # -timeout: one input over 10 s is a hang; -rss_limit_mb: the decoders' bounds keep far below 2 GiB
  # FUZZ_REPLAY_ONLY (make fuzz-ci): these targets only replay the committed corpus (-runs=0), deterministically;
  # their open-ended mutation writes HDF5 files through libhdf5, whose own crashes a random 15 s run may meet
  replay=()
  case " ${FUZZ_REPLAY_ONLY:-} " in *" $t "*) replay=(-runs=0) ;; esac
  "$bin" "${replay[@]}" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -max_len="${maxlen[$t]:-65536}" \
    -artifact_prefix="$work/" "$work/corpus" "$seeds" >"$work/log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  corpus=$(( $(ls "$work/corpus" | wc -l) + $(ls "$seeds" | wc -l) ))
  printf '{"harness":"%s","seconds":%s,"executions":%s,"corpus":%s,"rc":%s}\n' "$t" "$secs" "${execs:-0}" "$corpus" \
    "$rc" >>"$stats"
  rows+=("$(printf '%-18s %8s %12s %8s  %s' "$t" "$secs" "${execs:-0}" "$corpus" \
    "$([ $rc -eq 0 ] && echo ok || echo FAILED)")")
  if [ $rc -ne 0 ]; then
    fail=1
    grep -E '^==[0-9]+==ERROR|^SUMMARY|Test unit written to|contract broken|^INFO: a leak' "$work/log" | head -20 >&2
    echo "fuzz-ci: $t FAILED (exit $rc); input: $(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* \
      2>/dev/null | tr '\n' ' ')log: $work/log" >&2
  fi
done
printf '%-18s %8s %12s %8s  %s\n' target seconds executions corpus result
printf '%s\n' "${rows[@]}"
echo "fuzz-ci: stats appended to $stats"
exit $fail
