"""Jobs the batch-system conformance suite issues (tests/test_batch_conformance.py)."""
