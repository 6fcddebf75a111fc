"""pytest plugin: fixtures users need to test their own factory firmware.

Installed as the ``impfactory`` pytest11 entry point. Fixtures are defined in
topic modules (``plugin_*.py`` beside this one) and gathered here.
"""
