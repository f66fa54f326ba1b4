"""CPython's own tests of multiprocessing.Pool, run against jobtree.Pool.

The ``_TestPool``, ``_TestPoolWorkerErrors`` and ``_TestPoolWorkerLifetime``
classes of ``Lib/test/_test_multiprocessing.py`` are imported from this
machine's Python (its ``test`` package; nothing of them is copied here) and
run with their bodies and assertions unchanged, with the Pool class swapped
for jobtree.Pool (``multiprocessing.Pool`` too, which some of them call).

Left out, as they read multiprocessing's private list of worker processes
(``p._pool``), which a jobtree.Pool does not have: test_make_pool (whose
ValueError half tests/test_pool_compat.py checks) and
test_pool_worker_lifetime. Expected to fail: test_unpickleable_result, the
documented difference (a lambda returned by the function comes back by
value, thanks to cloudpickle, instead of raising MaybeEncodingError).
"""

from __future__ import annotations

import multiprocessing
import sys
import unittest
from typing import Any

import pytest

import jobtree

if sys.version_info[:2] != (3, 11):
    pytest.skip("these are CPython 3.11's Pool tests", allow_module_level=True)
cpython = pytest.importorskip("test._test_multiprocessing",
                              reason="this Python has no test package")

LEFT_OUT = {"test_make_pool", "test_pool_worker_lifetime"}
BY_VALUE = {"test_unpickleable_result"}


class _WithJobtreePool(cpython.BaseMixin):
    TYPE = "processes"
    Pool = staticmethod(jobtree.Pool)
    _saved: Any = None

    @classmethod
    def setUpClass(cls) -> None:
        cls._saved = multiprocessing.Pool
        multiprocessing.Pool = jobtree.Pool  # type: ignore[misc,assignment]
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            super().tearDownClass()
        finally:
            multiprocessing.Pool = cls._saved  # type: ignore[misc]


def _adapted(name: str, base: type) -> type:
    body: dict[str, Any] = {}
    for test in dir(base):
        if test in LEFT_OUT:
            body[test] = unittest.skip("reads multiprocessing's private worker list")(
                lambda self: None)
        elif test in BY_VALUE:
            body[test] = unittest.expectedFailure(getattr(base, test))
    # (named as this module names it: workers import the class for its methods)
    return type(name, (base, _WithJobtreePool, unittest.TestCase), body)


TestJobtreePool = _adapted("TestJobtreePool", cpython._TestPool)
TestJobtreePoolWorkerErrors = _adapted("TestJobtreePoolWorkerErrors",
                                       cpython._TestPoolWorkerErrors)
TestJobtreePoolWorkerLifetime = _adapted("TestJobtreePoolWorkerLifetime",
                                         cpython._TestPoolWorkerLifetime)
