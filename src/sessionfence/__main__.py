"""`python -m sessionfence ...` runs the `sessionfence` command line."""

from .cli import main

main()
