"""Training: losses, RNG state, checkpoints, the run logger, validation and the loop (`trainer`)."""
