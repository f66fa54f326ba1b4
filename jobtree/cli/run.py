"""jobTreeRun: continue a tree from where it stopped (after a failure, a kill
or a crash of anything), without redoing finished work."""

from __future__ import annotations

import argparse

from .. import tree
from ..jobstore import JobStore
from ..options import add_options, resolve
from .common import entry_point, one_tree, tree_paths


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Runs the master on an existing tree; exits 0 when every target is done,
    1 when some failed for good."""
    parser = argparse.ArgumentParser(
        prog="jobTreeRun",
        description="Continue the job tree in --jobTree: finished targets stay done, "
                    "failed and interrupted ones run again (with the code as it is now). "
                    "Options given here override those the tree was run with.")
    add_options(parser)
    options = parser.parse_args(argv)
    paths = one_tree(tree_paths(options.jobTree))
    tree.check_owner(paths)
    store = JobStore.open(paths, readonly=True)
    try:
        stored = store.meta().get("options")
    finally:
        store.close()
    config, changed = resolve(options, stored)
    failed = tree.run(paths, config, changed)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
