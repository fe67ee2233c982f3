"""The browser face of WeakAnnotate: a trame-slicer web app over the same logic layer (``WeakAnnotateLib``).

Kept as its own package so the logic layer never imports trame: ``weakannotate serve`` imports
:mod:`WeakAnnotateWeb.app` only when it runs. This package only gathers input from the page, calls
``WeakAnnotateLib`` and shows the results; no algorithm lives here.
"""
