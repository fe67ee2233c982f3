"""Background work watched from the GUI thread: a timer reads what each job reported and never waits for it.

A *job* is anything with ``poll()`` (its new progress events), ``state`` and ``running``, as
:class:`WeakAnnotateLib.jobs.runner.TrainingJob` (training, pseudo-labelling); a *check* is a callable that
handles what is ready and returns whether it is still busy (e.g. a prediction thread). The timer runs while
anything watched is busy and stops by itself after the last one ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .timer import qt_timer

EventHandler = Callable[[dict[str, Any]], None]


class _WatchedJob:
    def __init__(self, job: Any, on_event: EventHandler, on_end: Callable[[Any], None] | None) -> None:
        self.job, self.on_event, self.on_end = job, on_event, on_end

    def __call__(self) -> bool:
        for event in self.job.poll():
            self.on_event(event)
        if self.job.state == "running" or self.job.running:
            return True  # still working, or its last line is written but the process has not exited yet
        if self.on_end is not None:
            self.on_end(self.job)
        return False


class JobPoller:
    """Polls watched jobs and checks every ``interval_ms`` (``timer``: a fake for tests; a ``qt.QTimer`` if None)."""

    def __init__(self, interval_ms: int = 500, *, timer: Any = None) -> None:
        self.timer = timer if timer is not None else qt_timer(interval_ms, self.tick)
        self._watched: list[tuple[Any, Callable[[], bool]]] = []

    def watch_job(self, job: Any, on_event: EventHandler, on_end: Callable[[Any], None] | None = None) -> None:
        """Pass each new event of ``job`` to ``on_event``; ``on_end(job)`` once it has ended (done, cancelled,
        failed). Watching a job again (a resumed one) replaces its handlers."""
        self._add(job, _WatchedJob(job, on_event, on_end))

    def watch(self, check: Callable[[], bool]) -> None:
        """Call ``check()`` every tick until it returns False."""
        self._add(check, check)

    def _add(self, key: Any, poll: Callable[[], bool]) -> None:
        self._watched = [(k, p) for k, p in self._watched if k is not key] + [(key, poll)]
        if not self.timer.isActive():
            self.timer.start()

    @property
    def busy(self) -> bool:
        return bool(self._watched)

    def tick(self) -> None:
        """One timer tick: poll everything watched, forget what has ended, stop the timer when nothing is left."""
        ended = [poll for _, poll in list(self._watched) if not poll()]
        # By identity of the poll: a handler may have watched something new (or the same job anew) meanwhile.
        self._watched = [(k, p) for k, p in self._watched if all(p is not e for e in ended)]
        if not self._watched:
            self.timer.stop()

    def stop(self) -> None:
        """Stop the timer and forget everything watched (the widget's cleanup); the work itself goes on."""
        self.timer.stop()
        self._watched = []
