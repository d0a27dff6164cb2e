"""Errors a user can fix: the CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """Bad input from the user (missing file, unreadable image, wrong checkpoint kind …)."""
