"""The challenge metric, in one place: SSIM (`ssim`, its torch-free core `ssim_moments`), the leaderboard
foreground mask (`foreground`) and the per-slice score record with the leaderboard Total (`score`).

The training loss, the validation metric and the leaderboard score all call these modules.
"""
