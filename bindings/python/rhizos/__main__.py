"""python3 -m rhizos --version"""
import argparse
import sys
from typing import List, Optional

from . import __version__, library_path, library_version


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m rhizos",
                                 description="RhizOS Python bindings")
    ap.add_argument("--version", action="store_true",
                    help="print the package and library versions")
    args = ap.parse_args(argv)
    if args.version:
        print("rhizos %s (librhizos %s, %s)" % (__version__, library_version(),
                                               library_path))
        return 0
    ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
