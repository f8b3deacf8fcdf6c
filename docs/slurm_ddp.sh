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
#SBATCH --open-mode=append           # a requeued job appends to the same log
#SBATCH --requeue                    # preempted (or a node failed): SLURM requeues the job with the same job id
set -euo pipefail

HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export OMP_NUM_THREADS=4
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1   # a new rendezvous store per restart (docs/distributed.md)

srun torchrun \
  --nnodes="$SLURM_NNODES" \
  --nproc_per_node=4 \
  --rdzv_id="$SLURM_JOB_ID" \
  --rdzv_backend=c10d \
  --rdzv_endpoint="$HEAD_NODE:29500" \
  --max-restarts=3 \
  final_main.py --config-name=train_vessl_final \
  exp_name="ddp_${SLURM_JOB_ID}" data.root=/path/to/Data result_root=/path/to/result \
  training.resume=true training.checkpoint_every_minutes=30
# --max-restarts: a worker that dies restarts the group, which continues from its latest checkpoint by itself.
# training.resume=true: the first run starts from scratch (with a warning), a requeued one (same SLURM_JOB_ID,
# so the same exp_name) continues; a preemption (SIGTERM) saves at once, a crash loses at most 30 minutes.
