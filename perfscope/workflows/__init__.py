"""Workflows: collect, train and estimate, built on the core (``perfscope`` primitives,
collectors and models). The CLI's ``perfscope.commands`` is a thin layer over them.
See docs/architecture.md."""
