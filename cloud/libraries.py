"""``#require`` at deploy time: impCloud refuses code that names a library it lacks.

impCloud resolves ``#require "Name.lib.nut:x.y.z"`` when a deployment is made, so
``impt build deploy`` of code naming an unknown library (or another major version
of a known one) fails there, with the library named, not later on a device. The
emulated cloud checks the same way against the same folders the devices use
(``--lib`` / ``IMPFACTORY_LIB_PATH``, then the libraries impfactory ships); the
device resolves again when it runs the code. Python device code (marked, for tests)
has no ``#require``.
"""

from __future__ import annotations

from impfactory.cloud.errors import InvalidError
from impfactory.devicecode import is_python_code, library_dirs


class LibraryNotFoundError(InvalidError):
    """Deployed code ``#require``s a library the cloud cannot give it (ours: title)."""

    title = "Invalid Library"


def check_requires(code: str, what: str) -> None:
    """Refuse ``code`` whose ``#require`` lines cannot all be resolved."""
    if "#require" not in code:
        return
    if is_python_code(code):
        return
    from impfactory.squirrel import LibraryError
    from impfactory.squirrel import require as sq_require

    try:
        sq_require.resolve(code, "device.nut" if what.startswith("device") else "agent.nut",
                           library_dirs())
    except LibraryError as err:
        raise LibraryNotFoundError(f"{what}: {err}") from err
