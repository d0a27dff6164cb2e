#!/bin/bash
# Two stages side by side on one thread each vs one after the other on two threads each (the `jobs` of
# `xmgie run`): sisgan 150 steps and a generator fit of 60 steps, two of each; prints the wall times.
cd "$(dirname "$0")/.."
X=.venv/bin/xmgie
gan() { $X baseline train --method sisgan --dataset shapes --seed $1 --steps 150 --out /tmp/par/gan$1.ckpt > /tmp/par/gan$1.log 2>&1; }
fit() { $X fit --config experiments/train.yaml --data experiments/data/shapes.yaml --trainer.max_steps=60 --trainer.val_check_interval=60 --trainer.limit_val_batches=1 --trainer.enable_progress_bar=false --seed_everything=$1 --trainer.default_root_dir=/tmp/par/fit$1 > /tmp/par/fit$1.log 2>&1; }
mkdir -p /tmp/par
trap 'rm -rf /tmp/par' EXIT
for kind in gan fit; do
  t0=$(date +%s.%N); OMP_NUM_THREADS=2 $kind 0; OMP_NUM_THREADS=2 $kind 1; t1=$(date +%s.%N)
  OMP_NUM_THREADS=1 $kind 2 & OMP_NUM_THREADS=1 $kind 3 & wait; t2=$(date +%s.%N)
  echo "$kind serial2x2threads $(echo "$t1-$t0"|bc) parallel2x1thread $(echo "$t2-$t1"|bc)"
done
