"""Suite-wide settings: every traced graph is verified and round-tripped through its text form."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py

os.environ.setdefault("KILN_VERIFY", "1")
