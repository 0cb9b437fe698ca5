"""Helper for subcommands whose issue has not landed yet."""

from lineside.errors import LinesideError


def not_implemented(command: str, issue: int) -> LinesideError:
    """Error telling the user a subcommand is not available yet."""
    return LinesideError(f"'lineside {command}' is not implemented yet (issue #{issue})")
