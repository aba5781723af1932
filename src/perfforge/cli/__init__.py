"""The ``perfforge`` command line."""
