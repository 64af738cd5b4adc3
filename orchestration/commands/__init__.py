"""One module per ``aloe`` subcommand, each with ``HELP`` and ``run(cfg) -> int``;
``aloesim.orchestration.cli`` finds them by name."""

__all__: list[str] = []
