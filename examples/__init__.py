"""Runnable examples; each script runs on its own: python examples/NAME.py."""
