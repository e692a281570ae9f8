"""
The hot path: per-instance handles generated for each query and input.

`db.words` is a bound method whose function is generated from the declared signature:
`async def words(view, path)` takes exactly the declared parameters, so Python itself
applies defaults and binds keywords, and the key is a tuple literal. For a cached hit, it
costs one tuple, one dict lookup, one `ContextVar.get`, a few attribute checks, and,
inside a running query, one dict store to record the read. No task, future or context
change is made; the only allocation beyond the key is the call's coroutine.

The generated source is small and fixed; only the parameter list varies. It is compiled
once per ingredient and kind, on the first instance's first access (`compile_factory`,
called by `_ingredients`' `make_handle`), and instantiated once per instance
(`instantiate`). The bound method's `__self__` is the view, so the handle's repr names
the database: `<bound method words of <Site rev=3 memos=5>>`.
"""

from __future__ import annotations

import linecache
import types
from collections.abc import Callable
from types import MethodType
from typing import TYPE_CHECKING, Any, TypeAlias

from ._errors import MissingInputError
from ._fetch import caught, fetch, follow, install, settle
from ._frames import ACTIVE, PROBING, RETRY, Frame, Pause
from ._store import ABSENT, EVICTED, Failure, QueryCell


if TYPE_CHECKING:
    import inspect

    from ._runtime import View
    from ._store import Ingredient


__all__ = ["HANDLE_CODES", "RESERVED_PREFIX", "Factory", "compile_factory", "instantiate"]

HANDLE_CODES: dict[int, types.CodeType] = {}
"""
The code of every handle compiled, by id: `picante.gather` tells handle coroutines by it
(by id, because hashing a code object hashes all of it; kept, so no id is reused).
"""

RESERVED_PREFIX = "_picante_"
"""Parameters may not start with this: the generated code uses such names."""

_QUERY = """\
def factory(_picante_cells, _picante_ingredient, _picante_lru, _picante_tally, {defaults}):
    _picante_cells_get = _picante_cells.get
    async def _picante_handle(_picante_view, {params}):
        _picante_key = {key}
        try:
            _picante_cell = _picante_cells_get(_picante_key)
        except TypeError:
            raise _picante_unhashable(_picante_key) from None
        _picante_frame = _picante_active_get()
        if _picante_cell is not None:
            if _picante_cell.clean or _picante_cell.verified_at == _picante_view.revision:
                _picante_value = _picante_cell.value
                if _picante_cell.failure is None and _picante_value is not _picante_EVICTED:
                    if _picante_frame is None:
                        _picante_tally.hits += 1
                        {touch}
                        return _picante_value
                    if (
                        _picante_frame.view is _picante_view
                        and _picante_frame.revision == _picante_view.revision
                    ):
                        _picante_frame.deps[_picante_cell] = None
                        _picante_tally.hits += 1
                        {touch}
                        return _picante_value
        if _picante_probing():
            # A first step taken by `picante.gather`, and no hit: the rest runs in a task.
            await _picante_Pause()
            _picante_cell = _picante_cells_get(_picante_key)
        if _picante_cell is None:
            # Query cells are only ever made on the loop's thread: no race to guard against.
            _picante_cell = _picante_cells[_picante_key] = _picante_QueryCell(
                _picante_ingredient, _picante_key
            )
            if (
                _picante_frame is not None
                and _picante_frame.view is _picante_view
                and _picante_frame.revision == _picante_view.revision
                and _picante_view.parent is None
                and _picante_view.sync.views == 1
                and not _picante_view.listeners
                and _picante_view.shared is None
                and not _picante_ingredient.cycle
            ):
                # Cold, read by a running query of this view, and nobody can be evaluating
                # it: run the body right here, as `execute` would, with no coroutine of
                # its own (the cold path of `fetch`, inline).
                _picante_tally.misses += 1
                _picante_child = _picante_Frame(
                    _picante_view, _picante_cell, _picante_frame.revision, _picante_frame
                )
                _picante_child.home = _picante_cell
                _picante_cell.flight = _picante_child
                _picante_view.counters.executions += 1
                _picante_child.untracked = _picante_ingredient.volatile
                _picante_token = _picante_ACTIVE.set(_picante_child)
                _picante_outcome = _picante_RETRY
                try:
                    try:
                        _picante_value = await _picante_ingredient.fn(
                            _picante_view.db, *_picante_key
                        )
                    except BaseException as _picante_error:
                        _picante_value = _picante_caught(_picante_error)
                    finally:
                        _picante_ACTIVE.reset(_picante_token)
                    _picante_install(_picante_view, _picante_child, _picante_value)
                    _picante_outcome = _picante_value
                finally:
                    if _picante_cell.flight is _picante_child and not _picante_view.sync.extra:
                        _picante_cell.flight = None
                    else:
                        _picante_view.sync.release(_picante_child)
                    if _picante_child.followers:
                        _picante_settle(_picante_child, _picante_outcome)
                _picante_frame.deps[_picante_cell] = None
                if type(_picante_value) is _picante_Failure:
                    _picante_frame = _picante_child = None
                    return _picante_value.reraise()
                return _picante_value
        _picante_tally.misses += 1
        if (
            _picante_frame is None
            and (_picante_flight := _picante_cell.flight) is not None
            and _picante_flight.revision == _picante_view.revision
            and _picante_flight.view is _picante_view
        ):
            # From outside any query, with this state's flight running: follow it on a
            # bare future (`follow`), with no `single_flight` coroutine in between.
            _picante_value = await _picante_follow(_picante_flight)
        else:
            _picante_value = await _picante_fetch(_picante_view, _picante_cell, _picante_frame)
        while _picante_value is _picante_RETRY:
            # Followed from outside any query, the flight was cancelled: ask again.
            _picante_value = await _picante_fetch(_picante_view, _picante_cell, _picante_frame)
        if _picante_frame is not None:
            if _picante_frame.view is _picante_view:
                _picante_frame.deps[_picante_cell] = None
            else:
                # A query of another database (or view) is not a dependency: its changes
                # are not this one's revisions. The read is untracked.
                _picante_frame.untracked = True
        if type(_picante_value) is _picante_Failure:
            # The memoized exception's traceback will hold this frame: not the caller's
            # evaluation (a reader, for which its view would keep old versions).
            _picante_frame = None
            return _picante_value.reraise()
        return _picante_value
    return _picante_handle
"""

_INPUT = """\
def factory(_picante_cells, _picante_ingredient, _picante_lru, _picante_tally, {defaults}):
    _picante_cells_get = _picante_cells.get
    async def _picante_handle(_picante_view, {params}):
        _picante_key = {key}
        try:
            _picante_cell = _picante_cells_get(_picante_key)
        except TypeError:
            raise _picante_unhashable(_picante_key) from None
        _picante_frame = _picante_active_get()
        if _picante_frame is None or _picante_frame.view is not _picante_view:
            if _picante_frame is not None:
                # An input of another database (or view): an untracked read.
                _picante_frame.untracked = True
            if _picante_cell is not None:
                _picante_value = _picante_cell.value
            elif _picante_view.parent is None:
                raise _picante_MissingInputError(_picante_ingredient.name, _picante_key)
            else:
                _picante_value = _picante_view.inherited(_picante_ingredient.name, _picante_key)[1]
        else:
            if _picante_cell is None:
                # Absence is a dependency too: the cell is where a later set finds readers.
                _picante_cell = _picante_view.materialize_input(
                    _picante_cells, _picante_ingredient, _picante_key
                )
            _picante_frame.deps[_picante_cell] = None
            # The value before the stamp: see InputCell.__init__.
            _picante_value = _picante_cell.value
            if _picante_cell.changed_at > _picante_frame.revision:
                _picante_value = _picante_cell.version_at(_picante_frame.revision)[1]
        if _picante_value is _picante_ABSENT:
            raise _picante_MissingInputError(_picante_ingredient.name, _picante_key)
        return _picante_value
    return _picante_handle
"""

Factory: TypeAlias = Callable[..., Callable[..., Any]]


def compile_factory(kind: str, name: str, signature: inspect.Signature, unhashable: Any) -> Factory:
    """Compile the handle factory of a query (*kind* `"query"`) or input with *signature*."""
    params: list[str] = []
    defaults: list[str] = []
    names: list[str] = []
    positional_only = False
    for index, param in enumerate(signature.parameters.values()):
        if param.kind is param.POSITIONAL_ONLY:
            positional_only = True
        elif positional_only:
            params.append("/")
            positional_only = False
        if param.default is param.empty:
            params.append(param.name)
        else:
            default = f"_picante_d{index}"
            defaults.append(default)
            params.append(f"{param.name}={default}")
        names.append(param.name)
    if positional_only:
        params.append("/")
    key = f"({names[0]},)" if len(names) == 1 else f"({', '.join(names)})"
    touch = "_picante_lru.touch(_picante_cell)" if kind == "lru" else "pass"
    template = _INPUT if kind == "input" else _QUERY
    source = template.format(
        name=name,
        params=", ".join(params),
        defaults=", ".join(defaults),
        key=key,
        touch=touch,
    )
    filename = f"<picante {kind} handle {name}>"
    # Registered so that tracebacks through the generated code show its lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    # Every name the generated code uses starts with `_picante_`, which no parameter may:
    # a query named `fetch` or a parameter named `lru` cannot shadow one.
    namespace: dict[str, Any] = {
        "_picante_ABSENT": ABSENT,
        "_picante_EVICTED": EVICTED,
        "_picante_Failure": Failure,
        "_picante_MissingInputError": MissingInputError,
        "_picante_QueryCell": QueryCell,
        "_picante_ACTIVE": ACTIVE,
        "_picante_Frame": Frame,
        "_picante_RETRY": RETRY,
        "_picante_Pause": Pause,
        "_picante_active_get": ACTIVE.get,
        "_picante_probing": PROBING.get,
        "_picante_caught": caught,
        "_picante_fetch": fetch,
        "_picante_follow": follow,
        "_picante_install": install,
        "_picante_settle": settle,
        "_picante_unhashable": unhashable,
    }
    exec(compile(source, filename, "exec"), namespace)
    code: types.CodeType = namespace["factory"].__code__
    # The handle's code named as the query, for reprs and tracebacks.
    consts = tuple(
        const.replace(co_name=name, co_qualname=name)
        if isinstance(const, types.CodeType) and const.co_name == "_picante_handle"
        else const
        for const in code.co_consts
    )
    factory: Factory = types.FunctionType(code.replace(co_consts=consts), namespace)
    HANDLE_CODES.update({id(const): const for const in consts if isinstance(const, types.CodeType)})
    return factory


def instantiate(
    factory: Factory,
    view: View,
    ingredient: Ingredient,
    *,
    lru: Any,
    defaults: tuple[object, ...],
    qualname: str,
) -> MethodType:
    """Make the handle of *ingredient* for *view*: a method bound to the view."""
    tally = view.tally(ingredient.name) if ingredient.kind != "input" else None
    function: Any = factory(view.table(ingredient.name), ingredient, lru, tally, *defaults)
    function.__qualname__ = qualname
    function.__doc__ = ingredient.__doc__
    function.ingredient = ingredient
    return MethodType(function, view)
