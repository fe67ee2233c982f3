"""Bad input shown in a panel's status line.

Every loader and algorithm of ``WeakAnnotateLib`` raises :class:`InputError` with a message that names the
problem and what to do; a panel shows that message as one line and leaves the scene as it was. Anything
else is a bug: with ``failure`` it is shown by Slicer's error display (with its traceback) and re-raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from WeakAnnotateLib.core.errors import InputError


@dataclass
class Outcome:
    """What a :func:`showing_input_errors` block ended with: ``message`` is the InputError's, "" if none."""

    message: str = ""

    @property
    def ok(self) -> bool:
        return not self.message


def show_text(target: Any, text: str) -> None:
    """Put ``text`` in a label (anything with a ``text`` property) or pass it to a callable."""
    if callable(target):
        target(text)
    else:
        target.text = text


def _error_display(failure: str, wait_cursor: bool) -> Any:
    if not failure:
        return nullcontext()
    import slicer.util  # Why here: Slicer's error dialog exists only in the desktop application.

    return slicer.util.tryWithErrorDisplay(failure, waitCursor=wait_cursor)


@contextmanager
def showing_input_errors(
    status: Any | Callable[[str], None], failure: str = "", *, wait_cursor: bool = False
) -> Iterator[Outcome]:
    """Run the block; an InputError stops it and its message goes to ``status`` (a label or a callable).

    ``failure``: the title under which Slicer's error display shows any other exception (which is re-raised);
    ``wait_cursor``: show the wait cursor meanwhile (with ``failure``). Code after the ``with`` runs in both
    cases; it can ask the yielded :class:`Outcome`.
    """
    outcome = Outcome()
    with _error_display(failure, wait_cursor):
        try:
            yield outcome
        except InputError as error:
            outcome.message = str(error)
            show_text(status, outcome.message)
