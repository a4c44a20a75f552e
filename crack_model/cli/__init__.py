"""The ``crack-model`` command line."""
