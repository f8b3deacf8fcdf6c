"""The library behind the three scripts, in layers that import only downwards (``docs/architecture.md``).

Root helpers (``errors``, ``atomic``, ``distributed``, ``figures``), then ``mri`` (FFT, coils, crop, ACS, GRAPPA),
``metrics`` (SSIM, foreground mask, slice scores), ``data`` and ``model``, then ``inference`` and ``evaluation``,
``experts``, ``training``, and the command-line ``tools`` and the 2026 harness contract ``learning``.
"""
