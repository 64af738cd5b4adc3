"""One module per ``aloe`` subcommand, each with ``HELP`` and ``run(cfg) -> int``."""
