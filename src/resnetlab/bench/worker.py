"""One measurement in a fresh process: ``python -m resnetlab.bench.worker FUNCTION JSON_KWARGS``.

Prints the result as one JSON line (the last line of stdout); `resnetlab.bench.training.run_isolated` reads it.
"""

import json
import sys

from resnetlab.bench.measure import WORKER_FUNCTIONS


def main(argv: list[str]) -> int:
    function, kwargs = argv[0], json.loads(argv[1])
    print(json.dumps(WORKER_FUNCTIONS[function](**kwargs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
