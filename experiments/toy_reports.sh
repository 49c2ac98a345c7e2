#!/usr/bin/env bash
# Regenerates experiments/reports/toy_ioi/, toy_ioi_redundant/ and toy_ioi_backups/ from fresh runs
# (about 10 min on our 2-core CPU). Run from the repository root: bash experiments/toy_reports.sh
set -euo pipefail
export HF_HUB_OFFLINE=1
rm -rf runs/sweeps/toy_ioi runs/sweeps/toy_ioi_families runs/sweeps/toy_ioi_redundant \
    runs/sweeps/toy_ioi_backups runs/toy_ioi_mixing_target_1 runs/toy_ioi_maximize  # a resumed sweep would keep points of older code

# The scalar α over direction × λ × init (the four λ × init points of a direction train in one batched forward).
python -m ioi_superpose.sweep --config experiments/toy_ioi.yaml --out runs/sweeps/toy_ioi --batch_variants 4 \
    --grid model.direction=denoising,noising --grid model.l1=0.001,0.01 --grid model.init=1.0,0.5
# The other families, both directions.
python -m ioi_superpose.sweep --config experiments/toy_ioi.yaml --out runs/sweeps/toy_ioi_families \
    --grid model.combination=per_position,hard_concrete,mixing --grid model.direction=denoising,noising
# Question 1: every layer-0 difference may move into layer 1's heads. Question 7: unbounded α, maximize.
python -m ioi_superpose.train fit --config experiments/toy_ioi.yaml --model.combination mixing \
    --model.mixing_target 1 --trainer.logger.init_args.name toy_ioi_mixing_target_1 --trainer.enable_progress_bar false
python -m ioi_superpose.train fit --config experiments/toy_ioi_maximize.yaml --trainer.enable_progress_bar false
# The model trained with head dropout (abc corruption: under name_swap the two directions are one experiment).
python -m ioi_superpose.sweep --config experiments/toy_ioi_redundant.yaml --out runs/sweeps/toy_ioi_redundant \
    --batch_variants 2 --grid model.direction=denoising,noising --grid model.l1=0.001,0.01
# The model whose layer-0 heads back each other up: here the two directions disagree.
python -m ioi_superpose.sweep --config experiments/toy_ioi_backups.yaml --out runs/sweeps/toy_ioi_backups \
    --batch_variants 2 --grid model.direction=denoising,noising --grid model.l1=0.001,0.01

rm -rf experiments/reports/toy_ioi experiments/reports/toy_ioi_redundant experiments/reports/toy_ioi_backups
python -m ioi_superpose.report runs/sweeps/toy_ioi runs/sweeps/toy_ioi_families \
    runs/toy_ioi_mixing_target_1/version_0 runs/toy_ioi_maximize/version_0 --out experiments/reports/toy_ioi
python -m ioi_superpose.report runs/sweeps/toy_ioi_redundant --out experiments/reports/toy_ioi_redundant
python -m ioi_superpose.report runs/sweeps/toy_ioi_backups --out experiments/reports/toy_ioi_backups
