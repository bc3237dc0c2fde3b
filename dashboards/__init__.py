"""The Dash dashboard: see issue 5."""
