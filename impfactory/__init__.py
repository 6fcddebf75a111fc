"""impfactory: an emulator and test harness for the Electric Imp Connected Factory Process.

The import package is assembled from the repository's top-level folders
(``protocol/`` is ``impfactory.protocol`` and so on, see ``pyproject.toml``), so
nothing generic such as ``protocol`` lands in a user's site-packages.
"""

__version__ = "0.1.0"
