"""The ``warden`` command line: operators' verbs over the same use cases the functions run.

Not bundled into the functions. May import anything in :mod:`warden`; nothing imports it.
"""

from warden.cli.main import main

__all__ = ["main"]
