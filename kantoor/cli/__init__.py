"""The ``kantoor`` command line."""
