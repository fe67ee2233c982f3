"""The one exception type users see.

Every loader, algorithm and command raises :class:`InputError` for bad input, with a message that names
the problem and what to do. Faces show the message as is (the CLI prints it and exits with status 2;
panels show it in their status line) and never a traceback.
"""


class InputError(ValueError):
    """Bad input from the user: a file, an annotation or a parameter that cannot be used."""


class WriteError(InputError):
    """A file could not be written (full disk, read-only or missing folder, no permission): one line naming the
    file and the cause; the previous file is unchanged. A subclass of InputError so that every face already
    shows it as a message; the CLI exits with status 1 for it (the input was fine)."""

    cause: str = ""  # "no space left on device", "read-only file system", …
