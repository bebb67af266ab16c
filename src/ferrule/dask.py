"""``ferrule.dask``: plugin functions over Dask collections, on a cluster.

    ref = ferrule.PluginRef("plugins/libkernels.so")
    ferrule.dask.ship(client, ref)                 # for workers that cannot see the file
    y = ferrule.dask.map_blocks(ref, "scale_add", x, 2.0, 1.0)   # x a dask array

Tasks carry the ``PluginRef``, never a loaded plugin: each worker process
loads the plugin once, on its first task, and keeps it for its life. On the
worker each block goes to the plugin as it is (a C-contiguous numpy block
is passed without a copy); the output block is allocated there and filled
by the plugin. Needs the ``dask`` extra: ``pip install ferrule[dask]``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import math
import os
import stat
import tempfile
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
from distributed import Client, Worker
from distributed.diagnostics.plugin import WorkerPlugin

from ._errors import FerruleError, LibraryNotFoundError, PinMismatchError
from ._loader.elf import open_regular
from ._loader.pin import file_sha256
from ._ref import PluginRef, add_shipped_dir

if TYPE_CHECKING:
    import dask.dataframe as dd
    from numpy.typing import DTypeLike

__all__ = ["map_blocks", "map_partitions", "ship"]

_SHIPPED = "ferrule-plugins"  # under each worker's local_directory: <sha256>/<file name>


# -- shipping


def ship(client: Client, *refs: PluginRef) -> None:
    """Send each ref's library to every worker of ``client``'s cluster, and
    to every worker that joins later, for workers that do not share this
    machine's files.

    Each worker writes the bytes to ``<local_directory>/ferrule-plugins/
    <sha256>/<file name>`` (owner-only, never over a good copy, which may be
    loaded) and looks there when a ref is not at its own path. The bytes are
    read here and checked against the ref's hash first: PinMismatchError if
    the file changed since the ref was made. Shipping the same ref again
    does nothing. For a synchronous ``distributed.Client``.
    """
    if not refs:
        raise TypeError("ship() takes a client and at least one ferrule.PluginRef")
    for ref in refs:
        if not isinstance(ref, PluginRef):
            raise TypeError(f"ship() takes ferrule.PluginRef objects, got {type(ref).__name__}: make one with "
                            "ferrule.PluginRef(path)")
    shipments = [_Shipment(ref.sha256, ref._name, _library_bytes(ref)) for ref in refs]  # all read before any goes
    for shipment in shipments:
        client.register_plugin(shipment, name=f"ferrule-ship-{shipment.sha256}-{shipment.name}")


def _library_bytes(ref: PluginRef) -> bytes:
    source = ref._source
    if source is None or not os.path.exists(source):
        raise LibraryNotFoundError(
            f"cannot ship plugin {ref._name}: its library is not on this machine (the ref names "
            f"{source or ref.path}); ship it from a machine that has the file, or put the file on the workers at "
            "the ref's path")
    with open_regular(source) as f:
        data = f.read()
    found = hashlib.sha256(data).hexdigest()
    if found != ref.sha256:
        raise PinMismatchError(
            f"cannot ship {source}: it has SHA-256 {found}, not the {ref.sha256} its PluginRef pins, so it changed "
            "since the ref was made; make a new ref (ferrule.PluginRef(path)) once you trust the file as it is now")
    return data


class _Shipment(WorkerPlugin):
    """One library's bytes, written on each worker as it starts."""

    # Run again when shipped again: a worker whose copy was damaged, or whose
    # setup failed, gets it then (a good copy is kept, so this is cheap).
    idempotent = False

    def __init__(self, sha256: str, name: str, data: bytes):
        self.sha256 = sha256
        self.name = name
        self.data = data

    async def setup(self, worker: Worker) -> None:
        root = os.path.join(worker.local_directory, _SHIPPED)
        # Off the worker's event loop: a large library takes a while to write.
        await asyncio.to_thread(_write_copy, root, self.sha256, self.name, self.data)
        self.data = b""  # written: the worker need not hold it any more
        add_shipped_dir(root)


def _write_copy(root: str, sha256: str, name: str, data: bytes) -> str:
    """Write data as root/sha256/name, owner-only, and return its path.

    A good copy already there is kept: it may be loaded, and a library in use
    must not change under the process that mapped it. The new file appears
    whole (written aside, then linked into place), and a copy with other
    contents (a torn write from an older worker) is replaced: loads are
    pinned, so it was never loaded."""
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise PinMismatchError(f"the bytes shipped for {name} have SHA-256 {found}, not {sha256}: they were damaged "
                               "on the way; ship the plugin again")
    folder = os.path.join(root, sha256)
    for directory in (root, folder):
        _private_dir(directory)
    target = os.path.join(folder, name)
    if _holds(target, sha256):
        return target
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    pending: str | None = temp
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o500)  # read and map; nobody writes a shipped copy
        try:
            os.link(temp, target)  # never over an existing file (another worker's copy may have won)
        except FileExistsError:
            if not _holds(target, sha256):
                os.replace(temp, target)
                pending = None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            if not _holds(target, sha256):  # a file system without hard links: a rename, unless a good copy won
                os.replace(temp, target)
                pending = None
    finally:
        if pending is not None:
            os.unlink(pending)
    return target


def _private_dir(path: str) -> None:
    """A directory only its owner may write (the loader refuses others)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o022:
        os.chmod(path, mode & ~0o022)


def _holds(path: str, sha256: str) -> bool:
    try:
        return file_sha256(path)[0] == sha256
    except (OSError, FerruleError):
        return False


# -- arrays


def map_blocks(ref: PluginRef, function: str, *args: Any, out: str | None = "out",
               dtype: DTypeLike | None = None) -> da.Array:
    """Call the plugin function ``function`` once per block, on the workers.

    ``args`` are the function's arguments in its order, leaving out the
    output parameter: dask arrays (all of one shape; their blocks are passed
    as buffers, rechunked like the first) and other values, passed to every
    call as they are (e.g. scalars).

    ``out`` names the function's ``mutbuf`` parameter: each call gets a new
    block of the first array's block shape and ``dtype`` (default: the first
    array's), which the plugin fills and which becomes the result's block,
    e.g. for ``(x: buf[f64], out: mutbuf[f64], k: f64)``. With ``out=None``
    the function returns a number (``(x: buf[f64]) -> f64``), and the result
    has one element per block (shape ``x.numblocks``, ``dtype`` default
    float64), to reduce further with dask.
    """
    arrays = _arrays_of(ref, function, out, args)
    first = arrays[0][1]
    for _i, other in arrays[1:]:
        if other.shape != first.shape and not (other.numblocks == first.numblocks and math.isnan(sum(other.shape))
                                               and math.isnan(sum(first.shape))):  # unknown sizes: dask checks blocks
            raise ValueError(f"map_blocks({function!r}): the dask arrays must have one shape, got {first.shape} and "
                             f"{other.shape}: the plugin is given one block of each, of the same size")
    values = list(args)
    for i, array in arrays[1:]:
        if array.chunks != first.chunks:
            values[i] = array.rechunk(first.chunks)
    positions = tuple(i for i, _array in arrays)
    if out is None:
        kind = np.dtype(np.float64 if dtype is None else dtype)
        run = functools.partial(_block, ref, function, None, kind.str, positions)
        chunks = tuple((1,) * len(c) for c in first.chunks)
        result: da.Array = da.map_blocks(run, *values, dtype=kind, chunks=chunks, token=f"ferrule-{function}",
                                         meta=np.empty((0,) * first.ndim, kind))
        return result
    kind = np.dtype(first.dtype if dtype is None else dtype)
    run = functools.partial(_block, ref, function, out, kind.str, positions)
    result = da.map_blocks(run, *values, dtype=kind, token=f"ferrule-{function}",
                           meta=np.empty((0,) * first.ndim, kind))
    return result


def _check_call(caller: str, ref: PluginRef, function: str, out: str | None) -> None:
    """The arguments map_blocks and map_partitions share."""
    if not isinstance(ref, PluginRef):
        raise TypeError(f"{caller}() takes a ferrule.PluginRef first, got {type(ref).__name__}: tasks carry a "
                        "reference, which each worker loads once (ferrule.PluginRef(path))")
    if not isinstance(function, str) or not function:
        raise TypeError(f"{caller}() takes the plugin function's name, got {function!r}")
    if out is not None and not isinstance(out, str):
        raise TypeError(f"out= names the function's mutbuf parameter, or is None, got {out!r}")


def _arrays_of(ref: PluginRef, function: str, out: str | None,
               args: tuple[Any, ...]) -> list[tuple[int, da.Array]]:
    _check_call("map_blocks", ref, function, out)
    arrays = [(i, a) for i, a in enumerate(args) if isinstance(a, da.Array)]
    if not arrays:
        raise TypeError(f"map_blocks({function!r}) needs at least one dask array among the arguments: it maps the "
                        "plugin function over its blocks")
    return arrays


def _block(ref: PluginRef, function: str, out: str | None, dtype: str, positions: tuple[int, ...],
           *args: Any) -> Any:
    """One block, on a worker: the plugin's function called on it."""
    values = list(args)
    for i in positions:
        values[i] = _as_buffer(values[i])
    shape = values[positions[0]].shape
    fn, index, kind = _plan(ref, function, out, dtype, "map_blocks", positions, tuple(values[i].dtype for i in positions))
    if index is None:
        return np.full((1,) * len(shape), fn(*values), dtype=kind)
    result = np.empty(shape, kind)
    values.insert(index, result)
    fn(*values)
    return result


def _as_buffer(block: Any) -> Any:
    """The block itself when the plugin can take it as it is (C-contiguous
    and aligned), else a copy that is. A block that reached the worker over
    the network can sit unaligned in the message it came in."""
    if type(block) is np.ndarray:
        flags = block.flags
        if flags.c_contiguous and flags.aligned:
            return block  # (numpy.require says the same, five times slower)
    return np.require(block, requirements=["C", "A"])


def _column_values(column: Any, kind: np.dtype[Any]) -> Any:
    """A column's values as numpy: a view of a numpy-backed one; for an
    extension dtype, a copy in which a missing value (NA) becomes NaN, which
    only a float buffer can hold."""
    if isinstance(column.dtype, np.dtype):
        return column.to_numpy()
    if column.hasnans:
        if kind.kind != "f":
            raise ValueError(f"map_partitions(): column {column.name!r} has missing values (NA), which a buffer of "
                             f"{kind} cannot hold: fill them first (.fillna(...)), or convert the column to "
                             "float64, where NA becomes NaN")
        return column.to_numpy(dtype=kind, na_value=np.nan)
    return column.to_numpy(dtype=kind)


# (plugin, function, out, dtype) -> the function, and where the output goes;
# made once per plugin object and worker: a task then costs a lookup.
_plans: dict[tuple[Any, ...], tuple[Any, Any, int | None, np.dtype[Any]]] = {}


def _plan(ref: PluginRef, function: str, out: str | None, dtype: str, caller: str, positions: tuple[int, ...],
          dtypes: tuple[np.dtype[Any], ...]) -> tuple[Any, int | None, np.dtype[Any]]:
    """The plugin's function for a task, where its output goes and of which
    dtype; ``dtypes`` are those of the blocks or columns passed as buffers,
    at ``positions`` among the arguments without the output."""
    plugin = ref.load()
    key = (ref._key, function, out, dtype, positions, dtypes)
    plan = _plans.get(key)
    if plan is not None and plan[0] is plugin:
        return plan[1], plan[2], plan[3]
    fn = plugin.functions.get(function)
    if fn is None:
        raise AttributeError(f"{caller}(): plugin {plugin.id!r} has no function {function!r}; it has "
                             f"{', '.join(sorted(plugin.functions)) or 'none'}")
    sig = fn.signature
    params = [p for p in sig.params if out is None or p.name != out]  # the arguments as the caller gives them
    for i, given in zip(positions, dtypes):
        elem = params[i].type.elem if i < len(params) else None
        if elem is not None and np.dtype(elem.numpy) != given:
            raise TypeError(f"{caller}(): {function}{sig} takes {params[i].type.name} as {params[i].name!r}, but the "
                            f"data passed there is {given}: convert it first (.astype(numpy.{elem.numpy}))")
    index: int | None = None
    if out is None:
        if sig.result is None or sig.result.kind not in ("int", "float", "bool"):
            raise TypeError(f"{caller}(out=None): {function}{sig} does not return a number; out=None is for a "
                            "function that returns one number per block. For one that fills a buffer, name its "
                            "mutbuf parameter with out=")
    else:
        index = next((i for i, p in enumerate(sig.params) if p.name == out), None)
        if index is None or sig.params[index].type.kind != "mutbuf":
            raise TypeError(f"{caller}(out={out!r}): {function}{sig} has no mutbuf parameter {out!r}; name the "
                            "parameter the plugin writes its output to with out=, or pass out=None for a function "
                            "that returns a number per block")
        elem = sig.params[index].type.elem
        assert elem is not None
        if np.dtype(elem.numpy) != np.dtype(dtype):
            raise TypeError(f"{caller}(): the output is of dtype {np.dtype(dtype)} (dtype=, else the first input's), "
                            f"but {function}{sig} writes {elem.name} to {out!r}: pass dtype=numpy.{elem.numpy}")
    kind = np.dtype(dtype)
    _plans[key] = (plugin, fn, index, kind)
    return fn, index, kind


# -- dataframes


def map_partitions(ref: PluginRef, function: str, data: dd.DataFrame | dd.Series, *args: Any,
                   columns: str | list[str] | None = None, out: str | None = "out", dtype: DTypeLike | None = None,
                   name: str | None = None) -> dd.Series:
    """Call the plugin function ``function`` once per partition, on the workers.

    The partition's ``columns`` (of a DataFrame, in the order of the
    function's buffer parameters), or the Series itself, are passed as
    buffers (without a copy when a column is a numpy array already), then
    ``args``. ``out`` names the function's ``mutbuf`` parameter: the result
    is a Series (named ``name``, default the function's name) on the
    partition's index, of ``dtype`` (default: the first column's). With
    ``out=None`` the function returns a number, and the result holds one per
    partition, indexed by partition number.
    """
    import dask.dataframe as dd
    import pandas as pd

    _check_call("map_partitions", ref, function, out)
    if isinstance(data, dd.DataFrame):
        if columns is None:
            raise TypeError(f"map_partitions({function!r}) over a DataFrame needs columns=[...]: the columns passed "
                            "as buffers, in the order of the function's buffer parameters")
        names = list(columns) if isinstance(columns, (list, tuple)) else [columns]
        missing = [c for c in names if c not in data.columns]
        if missing:
            raise KeyError(f"map_partitions({function!r}): no column {', '.join(map(repr, missing))}; the "
                           f"DataFrame has {', '.join(map(repr, data.columns))}")
        kinds = [_numpy_dtype(data[c].dtype, c) for c in names]
        selected: tuple[Any, ...] | None = tuple(names)
    elif isinstance(data, dd.Series):
        if columns is not None:
            raise TypeError(f"map_partitions({function!r}) over a Series takes no columns=: the Series is the buffer")
        kinds = [_numpy_dtype(data.dtype, data.name)]
        selected = None
    else:
        raise TypeError(f"map_partitions() maps over a dask DataFrame or Series, got {type(data).__name__}; for a "
                        "dask array use ferrule.dask.map_blocks")
    label = function if name is None else name
    inputs = tuple(k.str for k in kinds)
    if out is None:  # one number per partition, indexed by its number: the input's divisions no longer hold
        kind = np.dtype(np.float64 if dtype is None else dtype)
        meta = pd.Series(np.empty(0, kind), index=pd.Index([], dtype=np.int64), name=label)
        run = functools.partial(_partition, ref, function, selected, inputs, out, kind.str, label)
        result: dd.Series = dd.map_partitions(run, data, *args, meta=meta, token=f"ferrule-{function}",
                                              clear_divisions=True)
        return result
    kind = np.dtype(kinds[0] if dtype is None else dtype)
    meta = pd.Series(np.empty(0, kind), index=data._meta.index[:0], name=label)  # the partitions' own index
    run = functools.partial(_partition, ref, function, selected, inputs, out, kind.str, label)
    result = dd.map_partitions(run, data, *args, meta=meta, token=f"ferrule-{function}")
    return result


def _numpy_dtype(dtype: Any, column: Any) -> np.dtype[Any]:
    """The numpy dtype a column's values reach the plugin as: its own, or
    the one a pandas extension dtype (nullable, Arrow) stands for."""
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return dtype
    inner = getattr(dtype, "numpy_dtype", None)
    if isinstance(inner, np.dtype) and inner.kind in "biuf":
        return inner
    raise TypeError(f"map_partitions(): column {column!r} is of dtype {dtype}, which holds no numbers a plugin "
                    f"buffer could take; convert it first (df[{column!r}].astype('float64')), or leave it out of "
                    "columns=")


def _partition(ref: PluginRef, function: str, columns: tuple[Any, ...] | None, inputs: tuple[str, ...],
               out: str | None, dtype: str, label: str, part: Any, *args: Any,
               partition_info: dict[str, Any] | None = None) -> Any:
    """One partition, on a worker."""
    import pandas as pd

    series = [part] if columns is None else [part[c] for c in columns]
    kinds = tuple(np.dtype(k) for k in inputs)
    fn, index, kind = _plan(ref, function, out, dtype, "map_partitions", tuple(range(len(kinds))), kinds)
    buffers = [_as_buffer(_column_values(s, k)) for s, k in zip(series, kinds)]
    values = [*buffers, *args]
    if index is None:
        number = 0 if partition_info is None else partition_info["number"]
        return pd.Series(np.array([fn(*values)], kind), index=[number], name=label)
    result = np.empty(len(part), kind)
    values.insert(index, result)
    fn(*values)
    return pd.Series(result, index=part.index, name=label, copy=False)
