"""The package version, in one place: setuptools reads it (``[tool.setuptools.dynamic]`` in
pyproject.toml), ``tinker_recovery.__version__`` and ``tinker-recovery --version`` show it."""

__version__ = "0.2.0.dev0"
