"""oncenas's command-line entry points (:mod:`oncenas.cli`); the library is the ``supernets``, ``predictors`` and
``search`` packages."""
