"""Compiled (numba) engine for small layer-wise gradient flows: the vector field and scipy's DOP853 step
loop in one compiled loop, and a parallel loop over many flows (:mod:`flowsim.ensemble`). The field
:func:`~flowsim.integrator.compiled.field.layerwise_field` mirrors the numpy field of
:class:`flowsim.flows.gf.LayerwiseFlow` (numba needs its own code); ``tests/integrator/test_compiled_flow.py``
compares the two.

numba is optional: :func:`numba_available` says whether this engine can run; nothing here imports numba
until the engine is used.
"""

from __future__ import annotations

import importlib.util

#: largest state (number of factor entries) for which ``engine="auto"`` picks the compiled engine: above
#: it the matrix products dominate and the compiled loop gains nothing over scipy's.
AUTO_MAX_STATE = 4096


def numba_available() -> bool:
    """True when numba can be imported (the compiled engine is usable)."""
    return importlib.util.find_spec("numba") is not None
