"""A master that issues one job and then hangs until it is SIGKILLed (the
conformance suite's adoption test): ``python -m jobtree.testing.hang_master SPEC.json``.

SPEC holds the batch system's name, its folder, config and tree id, and the
job. Prints ``issued <batch id>`` once the job is issued.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from jobtree import batch as batch_systems
from jobtree.batch import JobSpec
from jobtree.resources import Resources


def main(path: str) -> None:
    spec = json.load(open(path, encoding="utf-8"))
    options = argparse.Namespace(clusterConfig=spec["config"])
    batch = batch_systems.create(spec["name"], options=options, workdir=spec["workdir"],
                                 tree_id=spec["tree_id"])
    job = spec["job"]
    batch_id = batch.issue(JobSpec(job["job_id"], job["attempt"], job["argv"],
                                   Resources(cpu=1), job["name"], job["log_path"]))
    print(f"issued {batch_id}", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1])
