"""What the 2026 organisers' harness imports besides ``utils/learning/test_part.py``: ``loss_function.SSIMLoss``
(their ``utils/common/metrics.py`` subclasses it) and ``utils.save_reconstructions`` (their ``recon_eval.py``
writes with it). The organisers copy their own ``recon_eval.py`` and ``utils/common/metrics.py`` into a team's
repository and run them unchanged; docs/edition_2026.md shows how.
"""
