"""Training: the run (`trainer`), its start or resume (`resume`), the epoch's optimizer steps (`loop`),
validation (`validate`), checkpoints (`checkpointer`, `checkpoint_policy`, `elastic`), what the config builds
(`build`), losses, schedulers, RNG state, stop signals, the run logger and Hydra sweeps (`sweep`).
"""
