#!/usr/bin/env bash
# The CLI on tasks other than the built-in IOI prompts, on the shipped toy models, and their report:
#   bash experiments/task_runs.sh        # a few minutes on a CPU; writes experiments/reports/tasks/
# - induction on checkpoints/toy_induction.pt (the induction task's own test sets: longer and shorter sequences)
# - the file task: the 96 IOI pairs of experiments/tasks/ioi_prompts.json on checkpoints/toy_ioi.pt
set -euo pipefail
export OMP_NUM_THREADS=1  # toy models: one thread is fastest
ROOT=runs/task_runs
rm -rf "$ROOT"
COMMON=(--trainer.max_epochs 5 --trainer.enable_progress_bar false --trainer.enable_model_summary false
        --trainer.logger.init_args.save_dir "$ROOT" --model.prune_target 0.9)
python -m ioi_superpose.train fit --model.model_name checkpoints/toy_induction.pt --data.task induction \
    --data.n_train 256 --data.n_val 64 --data.n_test 64 --data.batch_size 64 \
    --trainer.logger.init_args.name induction "${COMMON[@]}"
python -m ioi_superpose.train fit --model.model_name checkpoints/toy_ioi.pt --data.task file \
    --data.path experiments/tasks/ioi_prompts.json --data.n_train 64 --data.n_val 16 --data.n_test 16 \
    --data.batch_size 16 --trainer.logger.init_args.name ioi_file "${COMMON[@]}"
python -m ioi_superpose.report "$ROOT"/induction/version_* "$ROOT"/ioi_file/version_* --out experiments/reports/tasks
