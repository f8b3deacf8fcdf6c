"""Running a trained checkpoint: loading it with its input transform (`load`), reconstructing whole volumes in
batches with the 2026 timing convention (`reconstruct`) and writing the reconstructions (`writer`).
"""
