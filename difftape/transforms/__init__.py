"""Transformations of programs: reverse mode, batching, symbolic differentiation."""
