"""Challenge data: file layout and names (`layout`), h5 reading with clear errors (`h5`), under-sampling
masks (`masks`), per-slice datasets (`dataset`, `transforms`) and the synthetic data generator (`synthetic`).
"""
