"""Exceptions that carry a message meant for the person who ran the command."""


class CrackModelError(Exception):
    """A user-facing problem: bad input, missing file, wrong configuration.

    The CLI prints the message on one line and exits non-zero, without a traceback.
    The message names the input and says what to do.
    """


class ImageDecodeError(CrackModelError):
    """One image could not be turned into pixels; in a batch it becomes an error row."""
