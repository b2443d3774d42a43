"""The package's version: the project's (meson.build), checked equal by
tests/test_packaging.py. A literal, so that building the wheel reads it
without loading librhizos."""
__version__ = "0.1.0"
