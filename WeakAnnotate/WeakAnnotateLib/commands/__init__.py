"""Sub-commands of ``weakannotate`` (see ``cli.py``)."""
