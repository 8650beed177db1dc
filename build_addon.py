"""Build the Blender extension zip (dist/<name>-<version>.zip).

Not built yet: the add-on lands with its own issue. Until then this script refuses to run
rather than produce an archive that would not work.
"""

import sys

if __name__ == "__main__":
    sys.exit("build_addon.py: the Blender add-on is not built yet (see the add-on issue)")
