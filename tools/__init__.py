"""The ``impfactory`` command line and its benchmarks."""
