"""What every command of the project shares on its command line: ``--config``, ``--run-date``,
exit status 2 for a refusal, and errors as one line rather than a usage dump or a traceback."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import NoReturn

EXIT_REFUSED = 2


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def __init__(self, description: str | None = None, **kwargs):
        super().__init__(description=description, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print one line naming the problem and exit with status 2."""
        self.exit(EXIT_REFUSED, f"{self.prog}: error: {message}\n")


def parse_run_date(text: str) -> str:
    """Validate a YYYY-MM-DD logical run date and return it in that form."""
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise ValueError(f"run date must be YYYY-MM-DD, got {text[:40]!r}") from exc


def _run_date_type(text: str) -> str:
    try:
        return parse_run_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """--config: a YAML file laid over conf/recs.yaml (default: $RECS_CONFIG, else none)."""
    parser.add_argument(
        "--config", default=None, help="config file laid over conf/recs.yaml (default: $RECS_CONFIG, else none)"
    )


def add_run_date_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--run-date: the logical date of the run, checked once, here."""
    parser.add_argument("--run-date", required=required, type=_run_date_type, help="logical run date, YYYY-MM-DD")


def refuse(command: str, reason: object) -> int:
    """Report a refusal as one line on stderr and return the refusal exit status."""
    print(f"{command} refused: {reason}", file=sys.stderr)
    return EXIT_REFUSED
