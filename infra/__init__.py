"""Deploy steps, developer tools and the docker-free local stack (never part of a Lambda artifact)."""
import sys
from pathlib import Path

# The layer's package (booking_core) importable as it is on Lambda, so `python -m infra.…` works from a checkout
# without PYTHONPATH. Appended: a PYTHONPATH set by the caller (the Makefile, the tests) still comes first.
_LAYER = str(Path(__file__).resolve().parents[1] / "layer")
if _LAYER not in sys.path:
    sys.path.append(_LAYER)
