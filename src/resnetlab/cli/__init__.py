"""The ``resnetlab`` command line: ``train``, ``recipes``, ``eval``, ``predict``, ``export``, ``models``, ``info``,
``bench``, ``reproduce`` and ``report``.

An error a user can fix (an unknown name, a bad config value, a missing or corrupt file, a diverged loss) is a
`resnetlab.errors.ResnetlabError`: it prints one line and exits with its code (2; 3 for a diverged loss; 130 for
an interrupted run, after a checkpoint at its exact position); ``--debug`` shows the traceback instead. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from resnetlab.cli.parser import build_parser
from resnetlab.errors import ResnetlabError

EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ResnetlabError as error:
        if args.debug:
            raise
        print(f"resnetlab: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("resnetlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
