"""Walk a pickle stream's opcodes (pickletools) and record every global it names, without importing or calling
anything. joblib files interleave raw array bytes with the stream (after each NumpyArrayWrapper), so a small stack
machine tracks the literal values the opcodes push, enough to read each wrapper's shape and dtype and skip its
bytes; an array of Python objects is a nested pickle, walked the same way.
"""
from __future__ import annotations

import io
import pickletools
import re
from dataclasses import dataclass, field
from typing import IO, Any

WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
BOOSTER = ("xgboost.core", "Booster")
# The booster's model as XGBoost serializes it: UBJSON (a count after "[#": its type marker, then big-endian
# bytes) or, in older releases, JSON.
UBJSON_NAMES = re.compile(rb"\rfeature_names\[#([iUIlL])")
UBJSON_COUNT = {b"i": 1, b"U": 1, b"I": 2, b"l": 4, b"L": 8}
JSON_NAMES = re.compile(rb'"feature_names"\s*:\s*\[\s*"')
ITEMSIZE = {"M": 8, "m": 8}  # datetime64 and timedelta64 codes carry no size


@dataclass
class _Global:
    module: str
    name: str


@dataclass
class _Object:
    """The result of calling or instantiating a global: only its callable, arguments and state are kept."""

    factory: Any
    args: Any
    state: Any = None


class _Mark:
    pass


MARK = _Mark()


def _array_bytes(wrapper: _Object) -> tuple[int, bool, bool]:
    """(bytes of raw data, holds Python objects, has a padding byte) for a NumpyArrayWrapper's state."""
    state = wrapper.state if isinstance(wrapper.state, dict) else {}
    dtype = state.get("dtype")
    shape = state.get("shape")
    if not isinstance(dtype, _Object) or not isinstance(shape, tuple):
        raise ValueError("an array wrapper without shape or dtype")
    code = dtype.args[0] if isinstance(dtype.args, tuple) and dtype.args else None
    dstate = dtype.state if isinstance(dtype.state, tuple) else ()
    if not isinstance(code, str):
        raise ValueError("an array dtype without a type code")
    flags = dstate[7] if len(dstate) > 7 and isinstance(dstate[7], int) else 0
    if code.startswith("O") or flags & 1:
        return 0, True, False
    itemsize = dstate[5] if len(dstate) > 5 and isinstance(dstate[5], int) and dstate[5] > 0 else None
    if itemsize is None:
        digits = "".join(ch for ch in code if ch.isdigit())
        itemsize = int(digits) if digits else ITEMSIZE.get(code[0])
    if not itemsize:
        raise ValueError(f"an array dtype of unknown size ({code})")
    count = 1
    for size in shape:
        count *= int(size)
    return count * itemsize, False, state.get("numpy_array_alignment_bytes") is not None


@dataclass
class Findings:
    """What a pickle references and records, found without running it."""

    globals: set[tuple[str, str]] = field(default_factory=set)  # (module, name) of every class or function
    sklearn_version: str | None = None  # the first estimator's _sklearn_version
    dataframe: bool = False  # some estimator recorded feature_names_in_: it was fitted on a DataFrame


def walk(stream: IO[bytes]) -> Findings:
    """Run the pickle at the stream's position to its STOP, recording globals; skips joblib's raw arrays."""
    found = Findings()
    _walk(stream, found)
    return found


def _walk(stream: IO[bytes], findings: Findings) -> None:
    """walk(), adding to `findings` (a nested pickle adds to its container's findings)."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        items = []
        while stack:
            item = stack.pop()
            if item is MARK:
                break
            items.append(item)
        return items[::-1]

    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            return
        if name == "MARK":
            stack.append(MARK)
        elif name in ("GLOBAL", "INST"):
            module, _, attribute = str(arg).partition(" ")
            findings.globals.add((module, attribute))
            found = _Global(module, attribute)
            stack.append(found if name == "GLOBAL" else _Object(found, tuple(pop_mark())))
        elif name == "STACK_GLOBAL":
            attribute, module = stack.pop(), stack.pop()
            if not isinstance(module, str) or not isinstance(attribute, str):
                raise ValueError("STACK_GLOBAL without a module and name")
            findings.globals.add((module, attribute))
            stack.append(_Global(module, attribute))
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop()
            stack.append(_Object(stack.pop(), args))
        elif name == "NEWOBJ_EX":
            stack.pop()
            args = stack.pop()
            stack.append(_Object(stack.pop(), args))
        elif name == "OBJ":
            items = pop_mark()
            stack.append(_Object(items[0] if items else None, tuple(items[1:])))
        elif name == "BUILD":
            state = stack.pop()
            target = stack[-1]
            if isinstance(target, _Object):
                target.state = state
                if isinstance(target.factory, _Global) and (target.factory.module, target.factory.name) == WRAPPER:
                    _skip_array(stream, target, findings)
            if isinstance(state, dict):
                version = state.get("_sklearn_version")
                if isinstance(version, str):
                    findings.sklearn_version = findings.sklearn_version or version
                if "feature_names_in_" in state or state.get("_fitted_with_feature_names") is True:
                    findings.dataframe = True  # scikit-learn's estimators, and LightGBM's
                if isinstance(target, _Object) and isinstance(target.factory, _Global) and \
                        (target.factory.module, target.factory.name) == BOOSTER and booster_names(state):
                    findings.dataframe = True  # XGBoost keeps the names in its booster's serialized model
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(str(arg))] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[int(str(arg))])
        elif name in ("EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "EMPTY_SET"):
            stack.append({"EMPTY_DICT": {}, "EMPTY_LIST": [], "EMPTY_TUPLE": (), "EMPTY_SET": []}[name])
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            size = int(name[-1])
            items = stack[-size:]
            del stack[-size:]
            stack.append(tuple(items))
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name == "LIST":
            stack.append(pop_mark())
        elif name in ("DICT", "SETITEMS"):
            items = pop_mark()
            target = {} if name == "DICT" else stack[-1]
            pairs = dict(zip(items[0::2], items[1::2], strict=False)) if all(_hashable(k) for k in items[0::2]) else {}
            if isinstance(target, dict):
                target.update(pairs)
            if name == "DICT":
                stack.append(target)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            if isinstance(stack[-1], dict) and _hashable(key):
                stack[-1][key] = value
        elif name in ("APPEND",):
            value = stack.pop()
            if isinstance(stack[-1], list):
                stack[-1].append(value)
        elif name in ("APPENDS", "ADDITEMS"):
            items = pop_mark()
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name == "FROZENSET":
            stack.append(pop_mark())
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "NONE":
            stack.append(None)
        elif name in ("PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4"):
            raise ValueError(f"opcode {name} (persistent ids or the copyreg extension registry)")
        elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
            raise ValueError("out-of-band buffers (pickle protocol 5 with buffer_callback)")
        else:  # every other opcode pushes its argument: ints, floats, strings, bytes
            stack.append(arg)
    raise ValueError("the pickle stream ends without STOP")


def booster_names(state: Any) -> bool:
    """Whether an XGBoost Booster's pickled state (`{"handle": bytearray(model)}`) names its features."""
    handle = state.get("handle") if isinstance(state, dict) else None
    if isinstance(handle, _Object) and isinstance(handle.args, tuple) and handle.args:
        handle = handle.args[0]  # bytearray(b"...") as protocols below 5 write it
    if isinstance(handle, str):
        handle = handle.encode("latin-1")  # protocol 2's bytearray(text, "latin-1")
    if not isinstance(handle, (bytes, bytearray)):
        return False
    found = UBJSON_NAMES.search(handle)
    if found:
        size = UBJSON_COUNT[found.group(1)]
        return int.from_bytes(handle[found.end():found.end() + size], "big", signed=found.group(1) != b"U") > 0
    return JSON_NAMES.search(handle) is not None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _skip_array(stream: IO[bytes], wrapper: _Object, findings: Findings) -> None:
    """Step over the array data joblib wrote right after the wrapper."""
    size, objects, padded = _array_bytes(wrapper)
    if objects:
        _walk(stream, findings)  # a nested pickle of the array
        return
    if padded:
        padding = stream.read(1)
        stream.seek(int.from_bytes(padding, "little"), io.SEEK_CUR)
    stream.seek(size, io.SEEK_CUR)


