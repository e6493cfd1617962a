"""The one error type for bad input: names the file, the field and the first offending row."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user: a file, a field of it, or a command-line option.

    The message is one line: ``FILE: field 'F', row R: what is wrong``. The CLI
    prints it on stderr and exits with status 2. Library code names a field by
    its Python name (``num_samples``); the command line alone shows it as the
    flag the user typed, through :meth:`renamed`.
    """

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None, row: int | None = None):
        self.file = None if file is None else str(file)
        self.field = field
        self.row = row
        self.reason = message
        parts = []
        if self.file is not None:
            parts.append(f"{self.file}:")
        where = []
        if field is not None:
            where.append(f"field '{field}'")
        if row is not None:
            where.append(f"row {row}")
        if where:
            parts.append(", ".join(where) + ":")
        parts.append(" ".join(message.split()))  # one line, always
        super().__init__(" ".join(parts))

    def renamed(self, field: str) -> "InputError":
        """The same error with the field shown under another name (a command-line flag)."""
        return InputError(self.reason, file=self.file, field=field, row=self.row)


SEED_LIMIT = 2**32
"""Seeds are whole numbers in ``[0, 2**32)``: JAX and NumPy keys take 32 bits, and a larger or
negative seed would wrap silently onto another seed's draws."""


def check_at_least(minimum: int, **values: int) -> None:
    """An :class:`InputError` naming the first of ``values`` (field name = value) below ``minimum``."""
    for field, value in values.items():
        if value < minimum:
            raise InputError(f"must be at least {minimum}, not {value}", field=field)


def checked_seed(seed, field: str = "seed") -> int:
    """``seed`` as an int in ``[0, 2**32)``, or an :class:`InputError` naming ``field``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise InputError(f"is {seed!r}; a seed is a whole number from 0 to {SEED_LIMIT - 1}", field=field)
    return int(seed)
