#!/usr/bin/python3
"""Fails when a source file includes a header of a layer above its own.

The link of each layer's unit tests catches calls that reach upward; this
also catches headers that only declare or inline (see ARCHITECTURE.md).
Usage: layers.py SOURCE_ROOT
"""
import pathlib
import re
import sys

# Folder of a layer -> folders its files may include from.
ALLOWED = {
    "conf": {"conf"},
    "parsers": {"parsers"},
    "proxy/core": {"conf", "proxy/core"},
    "upstream": {"conf", "parsers", "proxy/core", "upstream"},
    "proxy": {"conf", "parsers", "proxy/core", "upstream", "proxy"},
}
INCLUDE = re.compile(r'^#include "([^"]+)/[^/"]+"', re.M)


def layer_of(folder):
    return folder if folder in ALLOWED else None


def main(root):
    root = pathlib.Path(root)
    problems = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((root / layer).glob("*")):
            if path.suffix not in (".h", ".cc"):
                continue
            for folder in INCLUDE.findall(path.read_text()):
                if layer_of(folder) and folder not in allowed:
                    problems.append(f"{path.relative_to(root)} ({layer}) includes from {folder}/")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
