"""Prove the cluster works: testinfra checks, HTTP checks, the Ray smoke job, and the report."""
