"""``python -m perfscope``: the command line, as the ``perfscope`` script runs it."""

from perfscope.cli import main

main()
