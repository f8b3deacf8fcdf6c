"""Running a trained model over whole volumes: batching, the forward pass and writing reconstructions."""
