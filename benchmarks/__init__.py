"""Reproducible speed and memory comparisons against the tools users would pick instead."""
