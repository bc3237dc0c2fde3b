"""CLI commands, one module each; importing a module registers its commands.

Each command parses its flags, calls one workflow (``perfscope.workflows``) or library
function, and renders the result; ``perfscope.cli`` maps perfscope's errors to exit
statuses. The CLI imports every command module at start (Typer reads their signatures),
so a command imports its workflow, and any package that loads pyarrow, pydantic, pandas or
dash, inside its function, when it runs: ``perfscope estimate`` and ``perfscope --help`` stay
light. Everything else is imported at the top of the module.
"""
