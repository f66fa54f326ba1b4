"""Classic jobTree's module layout, so that ported scripts may keep their
imports with one change of spelling (``jobTree`` → ``jobtree``)::

    from jobtree.scriptTree.target import Target
    from jobtree.scriptTree.stack import Stack

New code imports both from :mod:`jobtree`.
"""
