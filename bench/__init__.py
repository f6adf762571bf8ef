"""Benchmarks: wall times of the product's commands on fresh labs, with the machine they ran on."""
