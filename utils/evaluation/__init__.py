"""Scoring reconstructions against challenge targets: the leaderboard score (`leaderboard`)."""
