"""`python -m cellbench.cli`: the same as the `cellbench` command."""
from . import main

main()
