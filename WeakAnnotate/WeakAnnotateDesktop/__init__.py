"""What the four Slicer modules of the extension repeat in their widgets, written once.

The package is installed beside ``WeakAnnotateLib`` (qt-scripted-modules/WeakAnnotateDesktop/) and, like it,
is imported inside the module files' methods, so that a module loads before the Python dependencies are
installed. It is a face: it uses ``WeakAnnotateLib``, never the reverse.

* :mod:`.status` — an :class:`~WeakAnnotateLib.core.errors.InputError` becomes one line in a panel's status
  label (bad input is the user's to fix: no traceback, nothing changed).
* :mod:`.points` — follow a point list with a debounce timer (a drag fires many events: one update after the
  last), and restore the points kept on a segment as a point list.
* :mod:`.jobs` — poll background jobs (training, pseudo-labelling) and other background work from a timer on
  the GUI thread, never waiting for them.
* :mod:`.method_options` — a training method's own fields as a panel edits them (pure: no Qt), and
  :mod:`.method_form` — the widgets for them, built at run time from the method's descriptor.
* :mod:`.dependencies` — the first run's install plan (what is missing, torch through the PyTorch extension or a
  CPU wheel, what the user is told): standard library only, it runs before anything is installed; and
  :mod:`.first_run` — the panel that asks once, installs with progress and reloads the module.
* :mod:`.sample_data` — the self-tests' sample registered with Slicer's Sample Data module.
* :mod:`.i18n` — ``_()`` for user-facing text (Slicer's translation when present).

Qt and Slicer are imported by :mod:`.method_form` and :mod:`.first_run`, and lazily where a real timer is made
(:func:`.timer.qt_timer`); everything else runs headless (the tests drive it with a fake timer).
"""
