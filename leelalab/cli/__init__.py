"""The ``leelalab`` command: a thin layer over library functions, one module per command
group (``main`` holds the parser and the network/puzzle commands).
"""

from leelalab.cli.main import main

__all__ = ["main"]
