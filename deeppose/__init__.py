"""deeppose: a reproducible benchmark of DeepPose (Toshev & Szegedy 2014) across frameworks.

Importing this package loads no deep-learning framework: backends are imported by name only when
a stage asks for one (see `deeppose.backends`), so a broken framework fails only its own jobs.
"""

__version__ = "0.1.0"
