"""One module per `lineside` subcommand: HELP, add_arguments(parser), run(args) -> int."""
