"""Suite-wide settings: every traced graph is verified and round-tripped through its text form."""
import os

os.environ.setdefault("KILN_VERIFY", "1")
