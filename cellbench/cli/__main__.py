"""`python -m cellbench.cli`: the same as the `cellbench` command."""
from . import main

if __name__ == "__main__":  # not on import: tests import every module of the package
    main()
