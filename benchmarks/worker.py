"""Child-process entry: `python -m benchmarks.worker WORKLOAD COLUMN '{json settings}'` prints one JSON record."""
from __future__ import annotations

import json
import sys

from .harness import measure


def main() -> None:
    workload, column, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps(measure(workload, column, **settings)), flush=True)


if __name__ == "__main__":
    main()
