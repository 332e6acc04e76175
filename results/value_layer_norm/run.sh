#!/usr/bin/env bash
# V LayerNorm placement, converged budget, AlignIQL eta=-1 on local/hopper/medium-replay-v1, 3 seeds x {input, hidden}
set -u
# Run from a checkout of 9acaaab (the commit that made "input" the default; the placement is given
# explicitly below) with the project's virtual environment active; two units at a time.
export OMP_NUM_THREADS=1
unit() {
  ln=$1; seed=$2
  out=results/value_layer_norm
  name=ln_$ln
  dir=$out/$name-aligniql-local_hopper_medium-replay-v1-s$seed
  if [ ! -f $dir/summary.json ]; then
    python -m launch.pretrain --config=configs/quickstart.py --config.workdir=$out --config.name=$name --config.seed=$seed \
      --config.dataset=local/hopper/medium-replay-v1 --config.num_threads=1 --config.tau=0.7 --config.num_critic_steps=30000 \
      --config.num_actor_steps=30000 --config.eval.interval=10000 --config.eval.episodes=5 "--config.eval.modes=('argmax', 'implicit')" \
      '--config.eval.num_candidates=(16,)' --config.eval.max_episode_steps=0 --config.wandb.mode=disabled \
      --config.checkpoint_interval=5000 --config.log_interval=1000 --config.algorithm=aligniql --config.eta=-1.0 \
      --config.value_layer_norm=$ln $( [ -d $dir ] && echo --resume ) > $out/$name-s$seed.log 2>&1 || { echo "FAIL pretrain $ln $seed"; return; }
  fi
  [ -f $dir/final_eval.json ] || python -m study.evaluate --checkpoint=$dir/checkpoint.pt --out=$dir/final_eval.json --episodes=20 \
      --modes=argmax,implicit --num_candidates=16,1 >> $out/$name-s$seed.log 2>&1 || echo "FAIL eval $ln $seed"
  echo "done $ln $seed $(date +%T)"
}
export -f unit
python -m launch.make_dataset --env=Hopper-v5 --kind=medium-replay > /dev/null 2>&1
printf "input 0\nhidden 0\ninput 1\nhidden 1\ninput 2\nhidden 2\n" | xargs -P 2 -L 1 bash -c 'unit $0 $1'
echo ALL DONE
