#!/usr/bin/env bash
# Runs the README's main command ROUNDS x PARALLEL times, PARALLEL at once (each is the other's
# "job beside it"), each into its own output folder, and prints one line per run: exit status,
# wall seconds, and the last line it wrote to stderr if it failed.
#   bash bench/repeat_main.sh 2 2 | tee docs/reliability_main_runs.txt
set -u
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}; PARALLEL=${2:-2}
DATA=../shared/data/cifar10-subset/cifar-10-python.tar.gz
SERIES=output/repeat_main/$(date -u +%Y%m%dT%H%M%SZ)  # a new folder per call: a run never meets an earlier one
echo "# $(date -u +%FT%TZ) $(nproc) cores: $ROUNDS rounds x $PARALLEL at once of"
echo "# python tools/train.py -c configs/cpu/study_cifar10_split.yaml -o data.data_file=$DATA"
for r in $(seq 1 "$ROUNDS"); do
  for p in $(seq 1 "$PARALLEL"); do
    (
      out=$SERIES/r${r}_p${p}; log=$(mktemp); start=$(date +%s)
      python tools/train.py -c configs/cpu/study_cifar10_split.yaml -o "data.data_file=$DATA" \
        -o "study.output_dir=$out" >/dev/null 2>"$log"; rc=$?
      echo "run r${r}_p${p}: exit $rc, $(( $(date +%s) - start )) s$( [ $rc -ne 0 ] && echo ", $(tail -1 "$log")")"
      rm -f "$log"
    ) &
  done
  wait
done
