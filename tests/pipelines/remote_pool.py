"""A script using a Pool whose folder is on another machine (argv: location,
remote python, what to check); prints one JSON line of what came back."""

import json
import sys
import threading

from helper_remote import mark  # a local module: copied to the remote side too

from jobtree import Pool


def square(x):
    return x * x


def fails_on_three(x):
    if x == 3:
        raise KeyError(f"no {x}")
    return x


if __name__ == "__main__":
    location, python = sys.argv[1], sys.argv[2]
    found = {}
    with Pool(2, jobTree=location, remotePython=python) as pool:
        found["map"] = pool.map(square, range(10))
        found["starmap"] = pool.starmap(pow, [(2, 3), (3, 2)])
        found["imported"] = pool.map(mark, [1, 2])
        found["apply"] = pool.apply(square, (7,))
        seen = []
        result = pool.apply_async(square, (8,), callback=seen.append)
        found["async"] = [result.get(), seen]
        try:
            pool.map(fails_on_three, range(5))
        except Exception as err:  # noqa: BLE001
            found["error"] = [type(err).__name__, str(err)[:200],
                              "On the remote machine" in str(err.__cause__)]
        try:
            pool.map(square, [threading.Lock()])
        except Exception as err:  # noqa: BLE001
            found["unpicklable"] = [type(err).__name__, str(err)[:300]]
    print(json.dumps(found))
