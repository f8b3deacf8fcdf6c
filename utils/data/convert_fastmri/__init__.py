"""Public fastMRI multicoil data -> the SNU FastMRI challenge layout (SPEC §1).

    python -m utils.data.convert_fastmri --src ../fastmri/multicoil_train ../fastmri/multicoil_val --out ../Data_knee

- :mod:`.sources`: finding and checking the fastMRI files, brain or knee, reading their slices.
- :mod:`.plan`: split, acc4/acc8, challenge file names and masks, deterministic for a seed.
- :mod:`.convert`: the run: folder guard, resume, worker processes, progress bar.

How to train on the result: ``docs/data.md``.
"""
