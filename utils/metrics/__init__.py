"""The challenge metric, in one place: SSIM (`ssim`) and the leaderboard foreground mask (`foreground`).

The training loss, the validation metric and the leaderboard score all call these two modules.
"""
