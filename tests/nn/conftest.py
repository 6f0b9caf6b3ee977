"""tests/nn: make nn_compare importable (the suite may run with --import-mode=importlib)."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
