"""Challenge data: file layout and names (`layout`), h5 reading with clear errors (`h5`), masks (`masks`,
`mask_types`), per-slice datasets and their transforms (`dataset`, `transforms`, `sampler`), augmentation
(`augment`), coil compression (`compression`), an expert's share of the data (`subset`), and writing data in the
challenge layout (`challenge_writer`, `output_folder`): the synthetic generator (`synthetic`) and the fastMRI
converter (`convert_fastmri`).
"""
