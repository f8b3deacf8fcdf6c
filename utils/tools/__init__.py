"""Command-line tools that work on finished runs (``python -m utils.tools.<name>``)."""
