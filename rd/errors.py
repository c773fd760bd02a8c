"""One exception type for everything a user can get wrong.

The CLI prints ``RDError`` as a single line (problem and fix) and exits non-zero; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class RDError(Exception):
    """A problem the user can fix: ``problem`` says what is wrong, ``fix`` what to do."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem} Fix: {self.fix}" if self.fix else self.problem
