"""The one error a job reports as the user's: bad input found before any work."""


class InputError(ValueError):
    """Bad input found before any work: the message names it; no row is written."""
