"""``python -m palisade ...`` runs the ``palisade`` binary installed with this package."""

from __future__ import annotations

import os
import sys

from ._binary import find_palisade_bin


def main() -> None:
    binary = find_palisade_bin()
    if sys.platform == "win32":
        import subprocess

        sys.exit(subprocess.call([binary, *sys.argv[1:]]))
    os.execv(binary, [binary, *sys.argv[1:]])


if __name__ == "__main__":
    main()
