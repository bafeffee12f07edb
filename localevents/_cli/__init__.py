"""The commands of ``localevents`` (the group itself is ``localevents.cli.main``): one module
per command, plus the options, parameters, targets and rendering they share."""
