"""The one exception type that means "the user gave bad input"."""


class LinesideError(Exception):
    """Bad input or an unmet precondition; the CLI prints it as one line and exits 2.

    The message should say what is wrong and what to do about it.
    """


def missing_extra(module: str, extra: str) -> LinesideError:
    """Error for an optional dependency that is not installed."""
    return LinesideError(f"{module} is not installed: pip install 'lineside[{extra}]'")
