"""`python -m samix ...`: the samix command line, as the `samix` command runs it."""

from samix._cli import main

main()
