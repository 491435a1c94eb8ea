"""The ``transferkit`` command line: thin; it parses and calls :mod:`transferkit.api`."""
