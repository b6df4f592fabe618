"""`python -m dmlbench ...` is the `dmlbench` command."""

import sys

from dmlbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
