#!/usr/bin/env python3
"""The manual pages made from each program's --help: man reads each one
without a warning, and each names the program's commands and options.

Usage: man_pages.py PAGE.1..."""
import os
import re
import shutil
import subprocess
import sys
import unittest

PAGES = sys.argv[1:]
EXPECT = {
    "rhizos.1": ["flow run", "--api-key-file", "completion", "Exit status"],
    "rhizos-node.1": ["start", "--data", "benchmark"],
    "rhizos-orchestrator.1": ["--listen", "--metrics-key-file", "--admin-key-file"],
}


@unittest.skipUnless(shutil.which("man"), "no man")
class ManPages(unittest.TestCase):
    def test_each_page_reads_clean(self):
        self.assertEqual({os.path.basename(p) for p in PAGES}, set(EXPECT))
        for page in PAGES:
            with self.subTest(page=os.path.basename(page)):
                p = subprocess.run(["man", "--warnings", "-l", page], capture_output=True,
                                   text=True, env=dict(os.environ, MANWIDTH="100",
                                                       MAN_KEEP_FORMATTING="0"))
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stderr.strip(), "", p.stderr)
                text = re.sub(r".\x08", "", p.stdout)   # bold and underline overstrikes
                self.assertNotIn("??", text)              # a character man cannot show
                text = re.sub(r"\s+", " ", text)          # justified lines
                self.assertIn("NAME", text)
                for word in EXPECT[os.path.basename(page)]:
                    self.assertIn(word, text)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
