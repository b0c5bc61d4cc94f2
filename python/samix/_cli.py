"""The `samix` command (pip's console script): the samix command line, run in this process."""

import sys


def main() -> None:
    from samix import _samix  # importing samix first loads torch's libraries, which it links

    sys.exit(_samix.run_cli(["samix", *sys.argv[1:]]))
