"""jobTreeRun: continue a tree from where it stopped (after a failure, a kill
or a crash of anything), without redoing finished work; with --select and
--set, after changing what some targets ask for."""

from __future__ import annotations

import argparse

from ..options import add_options
from ..start import start_tree
from . import edit
from .common import entry_point, one_tree, tree_paths


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Runs the master on an existing tree; exits 0 when every target is done,
    1 when some failed for good."""
    parser = argparse.ArgumentParser(
        prog="jobTreeRun",
        description="Continue the job tree in --jobTree: finished targets stay done, "
                    "failed and interrupted ones run again (with the code as it is now). "
                    "Options given here override those the tree was run with. --select "
                    "with --set first changes what the matching targets ask for.")
    add_options(parser)
    edit.add_arguments(parser)
    options = parser.parse_args(argv)
    change = edit.parse(options)
    paths = one_tree(tree_paths(options.jobTree))
    on_master = None
    if change is not None:
        edit.matching(paths, change)  # a bad condition is refused before anything starts
        on_master = edit.applier(paths, change)
    failed = start_tree(paths, options, on_master=on_master)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
