#!/bin/bash
# SLURM example: 2 nodes x 4 GPUs, one torchrun launcher per node, c10d rendezvous on the first node.
#   sbatch docs/slurm_ddp.sh
#SBATCH --job-name=featurevarnet
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one torchrun per node; torchrun starts the per-GPU processes
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=48:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export OMP_NUM_THREADS=4

srun torchrun \
  --nnodes="$SLURM_NNODES" \
  --nproc_per_node=4 \
  --rdzv_id="$SLURM_JOB_ID" \
  --rdzv_backend=c10d \
  --rdzv_endpoint="$HEAD_NODE:29500" \
  final_main.py --config-name=train_vessl_final \
  exp_name="ddp_${SLURM_JOB_ID}" data.root=/path/to/Data result_root=/path/to/result
# Preempted or cancelled (SIGTERM)? Resubmit with training.resume=true and the same exp_name.
