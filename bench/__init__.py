"""Benchmarks of the peering service against baselines measured in the same run (SPEC §11)."""
