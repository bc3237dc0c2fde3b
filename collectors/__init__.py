"""Collectors: sweep kernel families over configurations and record one row each."""
