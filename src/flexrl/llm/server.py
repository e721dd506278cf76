"""``python -m flexrl.llm.server``: the same command as ``flexrl serve`` (the container images start it this way).

The server itself lives in :mod:`flexrl.llm.serving`.
"""

import sys

from flexrl.llm.serving.cli import main

if __name__ == "__main__":
    sys.exit(main())
