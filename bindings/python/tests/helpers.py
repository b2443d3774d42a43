"""Shared test fixtures: paths into the source tree."""
import os

ROOT = os.environ.get("RZ_SOURCE_ROOT") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
EXAMPLES = os.path.join(ROOT, "examples")
FLOWS = os.path.join(EXAMPLES, "flows")
MODULES = os.path.join(EXAMPLES, "modules")
DATA = os.path.join(ROOT, "tests", "data")


def flow_path(name):
    return os.path.join(FLOWS, name)
