"""Pure figure functions: rows (a pandas DataFrame) in, a plotly Figure out.

Each module serves one page; none imports Dash. Empty frames and frames missing a
column give a figure with a message annotation (``common.message_figure``), never an
exception.
"""
