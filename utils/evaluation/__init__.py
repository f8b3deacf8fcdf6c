"""Scoring reconstructions against challenge targets: the leaderboard score (`leaderboard`), the checks of a
reconstruction folder (`inputs`), the printed report, CSV and figures (`report`), the scorer's allocator tuning
(`memory`), torch scoring of model outputs in batches (`slices`) and the official loop transcribed as an oracle
(`official_reference`).
"""
