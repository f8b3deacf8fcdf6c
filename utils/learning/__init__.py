"""The 2026 SNU FastMRI Challenge harness contract (``test_part.py``)."""
