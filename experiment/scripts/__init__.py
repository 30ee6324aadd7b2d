"""Command-line entry points: ``python -m experiment.scripts.<name> --help``."""
