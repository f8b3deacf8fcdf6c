"""Command-line tools (``python -m utils.tools.<name>``): train an expert set (`train_experts`) and the
anatomy router (`train_router`), validate and measure them (`validate_experts`, `measure_routers`), import a
reference checkpoint (`import_checkpoint`), and compare or summarise finished runs (`compare_runs`,
`summarize_runs`).
"""
