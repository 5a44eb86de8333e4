#!/bin/bash
# HDFS (labeled event sequences) -> each loghub 2k sample no shipped experiment uses, one `fusionlog run` after the
# other (docs/pipeline.md, "ten systems nobody labeled"). Run from the repository root; runs/demo's LLM cache, when
# there, saves HDFS's event questions. Writes runs/explore/sweep/<S>/ and <S>.log, and a line per system to
# runs/explore/sweep/summary.txt.
set -u
out=runs/explore/sweep
mkdir -p "$out"
for S in ${SYSTEMS:-Android Apache HealthApp HPC Linux Mac OpenSSH Proxifier Spark Windows}; do
  cat > "$out/hdfs_to_$S.yaml" <<Y
name: hdfs_to_$S
description: "HDFS -> ${S}_2k (no labels)"
datasets:
  HDFS:
    kind: sequences
    templates: data/HDFS/HDFS_templates.csv
    sequences: [data/HDFS/hdfs_train.gz:normal, data/HDFS/hdfs_test_abnormal.gz:anomalous]
  $S:
    kind: raw
    inputs: [data/loghub_2k/$S/${S}_2k.log.gz]
sources: [HDFS]
target: $S
run:
  compare: [fusionlog-distilled, llm-events]
distill:
  rounds: 2
Y
  mkdir -p "$out/$S"
  [ -f runs/demo/llm_cache.sqlite ] && cp -n runs/demo/llm_cache.sqlite "$out/$S/"
  start=$(date +%s)
  .venv/bin/fusionlog run "$out/hdfs_to_$S.yaml" --run "$out/$S" > "$out/$S.log" 2>&1
  echo "$S rc=$? $(( $(date +%s) - start ))s" >> "$out/summary.txt"
  .venv/bin/ray stop --force > /dev/null 2>&1
done
