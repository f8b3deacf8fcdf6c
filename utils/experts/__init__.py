"""Experts: one network per anatomy x acceleration and a router that picks one per volume. The manifest format
(`manifest`), the routers (`routing`, with the anatomy CNN of `classifier`), reconstruction with an expert set
(`serve`), its validation (`validate`) and the routers' confusion tables (`measure`). The command-line tools
that train and measure them are in :mod:`utils.tools`; ``docs/experts.md`` explains them.
"""
