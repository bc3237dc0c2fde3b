"""Reference tables and sample profiles shipped with perfscope (read with importlib.resources)."""
