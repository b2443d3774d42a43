"""The ctypes mirrors of rhizos/_lib.py against the C layout: every
mirrored struct's size, and each mirrored field's offset and size, as the
C compiler of this build lays them out (the layout_probe program, generated
from the mirrors by bindings/python/layout_probe.py)."""
import ctypes
import json
import os
import subprocess
import unittest

import layout_probe
from rhizos import _lib

PROBE = os.environ.get("RZ_LAYOUT_PROBE")


def mirrors():
    """{c_name: ctypes class} for every Structure _lib.py defines."""
    return layout_probe.structs_of(_lib)


class LayoutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not PROBE:
            raise unittest.SkipTest("RZ_LAYOUT_PROBE not set (run through meson test)")
        out = subprocess.run([PROBE], check=True, capture_output=True, text=True).stdout
        cls.c = json.loads(out)

    def test_every_mirror_is_probed(self):
        self.assertEqual(sorted(self.c), sorted(mirrors()))

    def test_sizes_and_offsets_match(self):
        for name, cls in mirrors().items():
            c = self.c[name]
            with self.subTest(struct=name):
                self.assertEqual(ctypes.sizeof(cls), c["size"],
                                 "sizeof(%s): ctypes %d, C %d" % (
                                     name, ctypes.sizeof(cls), c["size"]))
            for field, (offset, size) in c["fields"].items():
                d = getattr(cls, field)
                with self.subTest(struct=name, field=field):
                    self.assertEqual((d.offset, d.size), (offset, size),
                                     "%s.%s: ctypes (offset, size) (%d, %d), C (%d, %d)"
                                     % (name, field, d.offset, d.size, offset, size))


if __name__ == "__main__":
    unittest.main()
