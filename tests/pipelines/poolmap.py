"""A script that maps a function over inputs with jobtree.Pool and prints the
results as JSON: the Pool tests run it (and kill it) as a user's script.

Every call of ``work`` appends a line to ``--out``/runs, so a test can count
how often each input ran.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from jobtree import Pool, PoolError

OUT = os.environ.get("POOLMAP_OUT", "")
SLEEP = float(os.environ.get("POOLMAP_SLEEP", "0"))
BROKEN = os.environ.get("POOLMAP_BROKEN", "")  # inputs fail while this file exists


def work(number: int) -> dict[str, int]:
    with open(os.path.join(OUT, "runs"), "a", encoding="utf-8") as handle:
        handle.write(f"{number}\n")
    time.sleep(SLEEP)
    if BROKEN and os.path.exists(BROKEN) and number % 7 == 3:
        raise ValueError(f"input {number} is broken")
    return {"input": number, "square": number * number}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", required=True)
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--chunksize", type=int, default=None)
    parser.add_argument("--batchSystem", default="singleMachine")
    parser.add_argument("--clusterConfig", default=None)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--retryCount", type=int, default=0)
    parser.add_argument("--stream", action="store_true", help="also imap three inputs")
    options = parser.parse_args()
    extra = {"clusterConfig": options.clusterConfig} if options.clusterConfig else {}
    with Pool(options.processes, jobTree=options.pool, batchSystem=options.batchSystem,
              retryCount=options.retryCount, **extra) as pool:
        try:
            results = pool.map(work, range(options.inputs), chunksize=options.chunksize,
                               memory="100M")
        except PoolError as err:
            print(f"PoolError: {err}", file=sys.stderr)
            return 1
        streamed = list(pool.imap(work, range(3), chunksize=1)) if options.stream else []
    print(json.dumps({"results": results, "streamed": streamed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
