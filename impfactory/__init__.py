"""impfactory: an emulator and test harness for the Electric Imp Connected Factory Process.

The import package is assembled from the repository's top-level folders
(``protocol/`` is ``impfactory.protocol`` and so on, see ``pyproject.toml``), so
nothing generic such as ``protocol`` lands in a user's site-packages.

Installed, the subpackages sit inside this package. In a source checkout they are
this folder's siblings; when the checkout's root comes first on ``sys.path`` (as
with ``python -m pytest`` run there, even over a non-editable install), this
folder would shadow the installed package and hide them, so the root joins the
package path. The condition holds only in a checkout.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

_here = _Path(__file__).resolve().parent
if not (_here / "protocol").is_dir() and (_here.parent / "protocol" / "__init__.py").is_file():
    __path__.append(str(_here.parent))
