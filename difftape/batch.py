"""``difftape.batch``: one program over many points, on Dask collections.

``map_partitions(program, collection, command="grad")`` answers each partition of a Dask DataFrame
(one point a row, one input a column) or Bag (of point dicts, or of NDJSON text lines as
``dask.bag.read_text`` gives) exactly as ``difftape COMMAND PROGRAM --batch`` answers it, vectorised,
compiled once per input signature on each worker, and returns a Dask collection to compose with the
rest of a notebook's Dask work. Dask is the optional extra ``pip install "difftape[dask]"``, imported
only when this is called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["map_partitions"]


def map_partitions(
    program: Any,
    collection: Any,
    command: str = "grad",
    *,
    of: str | None = None,
    at: Mapping[str, Any] | None = None,
    seed: int = 0,
    dtype: str = "float64",
    wrt: Iterable[str] | None = None,
    watch: Iterable[str] = (),
    unconnected: str | None = None,
) -> Any:
    """Answer ``command`` ("eval", "grad", "jacobian") for every point of a Dask DataFrame or Bag, lazily.

    ``program`` is the program's text (or a ``BatchProgram``, whose ``of``/``at``/``seed``/``dtype`` it
    takes); the other arguments are the command line's options of the same names (``at``: values
    shared by every point, which a point's own value overrides). The result has one element per point,
    in order, holding what ``--batch`` writes for it (a bad point gets its ``{"error": ...}`` in place,
    numbered by its position in its partition):

    - a DataFrame gives a DataFrame with the input's index and one column ``result``, the JSON text;
    - a Bag of dicts gives a Bag of the result objects (parsed); a Bag of text lines gives JSON lines.

    The program and options are checked here, before anything runs (a DifftapeError if they are bad).
    """
    from difftape.answers.dask_batch import map_partitions as run

    return run(program, collection, command, of=of, at=at, seed=seed, dtype=dtype, wrt=wrt, watch=watch,
               unconnected=unconnected)
