"""``python -m localevents`` is the ``localevents`` command."""

from localevents.cli import main

main()
