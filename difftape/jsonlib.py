"""The JSON library of ``--batch``: msgspec when it is installed (``difftape[fast]``), else the standard library.

Both give the same output byte for byte and read the same input to the same values (the tests hold
them to it), so this only decides the speed: msgspec parses a block of NDJSON in about 40% of
``json.loads``'s time and writes a column of floats in a tenth of ``map(float.__repr__)``'s. Where they
could differ the fast path is not used:

- reading, msgspec rejects what ``json.loads`` accepts beyond strict JSON (``NaN``, ``Infinity``,
  ``1e400``, lone surrogates ``"\\udc00"``): such a block falls back to ``json.loads``;
- writing, msgspec's shortest digits are Python's ``repr``'s, but its notation differs below 1e-4
  (``0.00001`` for ``1e-05``) and from 1e16 (``1e16`` for ``1e+16``): those numbers, and the
  non-finite ones (strings ``"nan"``, ...), are written by ``repr``.

``DIFFTAPE_JSON=stdlib`` in the environment forces the standard library (the tests and
``benchmarks/bench_batch.py`` compare the two). Imported only on the batch path, so start-up
does not pay for msgspec.
"""

from __future__ import annotations

import os
from typing import Any

#: The environment variable that picks the library: "stdlib" forces the standard library.
ENV = "DIFFTAPE_JSON"

_state: dict[str, Any] = {}


def fast() -> Any:
    """``(decode, encode)`` of msgspec when installed and not disabled, else None (use ``json``)."""
    if "fast" not in _state:
        _state["fast"] = _load()
    return _state["fast"]


def _load() -> Any:
    if os.environ.get(ENV, "").strip().lower() in ("stdlib", "json"):
        return None
    try:
        import msgspec.json
    except ImportError:
        return None
    return msgspec.json.Decoder().decode, msgspec.json.Encoder().encode


def name() -> str:
    """The library in use: "msgspec" or "stdlib" (for benchmarks and messages)."""
    return "stdlib" if fast() is None else "msgspec"


def reset() -> None:
    """Forget the choice (tests change the environment between runs)."""
    _state.clear()
