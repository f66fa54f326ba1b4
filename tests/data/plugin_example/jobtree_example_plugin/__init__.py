"""A batch system for jobtree from another package: the example of docs/plugins.md.

``exampleLocal`` runs jobs on this machine like singleMachine, but leaves
one core to the user: a target may ask for at most all cores but one, and
jobs never use more at once. The package registers it in its
``pyproject.toml``, under the entry-point group ``jobtree.batch_systems``::

    [project.entry-points."jobtree.batch_systems"]
    exampleLocal = "jobtree_example_plugin:ExampleLocal"

and once it is installed, ``--batchSystem exampleLocal`` finds it.
"""

from __future__ import annotations

import os

from jobtree.batch.local import SingleMachine


class ExampleLocal(SingleMachine):
    """singleMachine, one core kept free.

    jobtree calls the class with ``max_threads``, ``max_cpus`` and
    ``max_memory`` (--maxThreads, --maxCpus, --maxMemory; None when not
    given), and with whichever of ``options`` (the tree's options),
    ``workdir`` (a folder of the tree for the batch system's files) and
    ``tree_id`` its ``__init__`` names.
    """

    name = "exampleLocal"

    def __init__(self, max_threads: int | None = None, max_cpus: float | None = None,
                 max_memory: int | None = None) -> None:
        spare = max(1, (os.cpu_count() or 2) - 1)
        super().__init__(max_threads=max_threads,
                         max_cpus=spare if max_cpus is None else min(max_cpus, spare),
                         max_memory=max_memory)
