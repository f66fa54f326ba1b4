"""jobTreeRun: continue a tree from where it stopped (after a failure, a kill
or a crash of anything), without redoing finished work."""

from __future__ import annotations

import argparse

from ..options import add_options
from ..start import start_tree
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
    failed = start_tree(one_tree(tree_paths(options.jobTree)), options)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
