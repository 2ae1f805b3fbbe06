"""The `bellmax` commands that are more than dispatch: argument parsing and printing for `solve`
and `rlhf`, kept out of the library packages (`bellmax.tabular`, `bellmax.rlhf`), which never parse
arguments or print. `bellmax.cli` dispatches to them; nothing in the library imports them."""
