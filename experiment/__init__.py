"""Experiments of the Memoria paper: raw data -> datasets -> models -> tasks -> scripts -> configs.

See ``experiment/README.md`` for how to install, train, evaluate and what was measured.
"""
