"""The synthetic generator of challenge-format data: brain from the MNI152 anatomy (`brain`), knee from a
procedural phantom (`knee`), coil sensitivities and noise (`coils`), a volume's acquisition (`simulate`), the
dataset sizes (`presets`), the whole run (`generate`) and public-fastMRI-format output (`fastmri_format`).

    python -m utils.data.synthetic --out ../Data --preset demo
"""
