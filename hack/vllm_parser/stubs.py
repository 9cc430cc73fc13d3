"""Placeholder modules for what vLLM's `vllm serve` parser imports but never uses to build
itself: torch, transformers, xgrammar and the wheel's compiled extensions.

Any attribute of a placeholder module is a _Stub; a _Stub can be called, indexed, subclassed,
used as a decorator, iterated (as empty) and joined into a type annotation. Call
install(names) before importing vllm; USED then says which placeholders were imported.
"""

import importlib.abc
import importlib.machinery
import sys
import types
import typing

USED = set()  # which stubbed modules were actually imported


class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _Stub(f"{cls.__name__}.{name}")

    def __getitem__(cls, item):
        return cls

    # `torch.dtype | Literal[...]` must stay a union: vLLM reads the Literal's choices from it.
    def __or__(cls, other):
        return typing.Union[cls, other]

    def __ror__(cls, other):
        return typing.Union[other, cls]


class _Stub(metaclass=_StubMeta):
    """Stands in for any class/function/constant of a stubbed module."""

    def __init__(self, *args, **kwargs):
        self._name = args[0] if args and isinstance(args[0], str) else "stub"

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _Stub(f"{self._name}.{name}")

    def __call__(self, *args, **kwargs):
        # Used as a decorator: @stub / @stub(...)
        if (
            len(args) == 1
            and not kwargs
            and (callable(args[0]) or isinstance(args[0], type))
            and not isinstance(args[0], _Stub)
        ):
            return args[0]
        return _Stub(f"{self._name}()")

    def __mro_entries__(self, bases):
        # `class X(torch.nn.Module)` -> plain subclass of object
        return (_StubBase,)

    def __getitem__(self, item):
        return self

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0

    def __bool__(self):
        return False

    def __or__(self, other):
        # In an annotation (`torch.dtype | Literal[...]`) keep the union; elsewhere stay a placeholder.
        if other is None or isinstance(other, type) or typing.get_origin(other) is not None:
            return typing.Union[_Stub, other]
        return self

    def __ror__(self, other):
        if other is None or isinstance(other, type) or typing.get_origin(other) is not None:
            return typing.Union[other, _Stub]
        return self

    def _same(self, other):
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same
    __truediv__ = __rtruediv__ = __floordiv__ = __and__ = __rand__ = _same
    __neg__ = __invert__ = lambda self: self

    def __contains__(self, item):
        return False

    def __eq__(self, other):
        # two placeholders compare equal (e.g. two fake op schemas)
        return isinstance(other, _Stub)

    def __ne__(self, other):
        return not isinstance(other, _Stub)

    def __hash__(self):
        return id(self)

    def __lt__(self, other):
        return False

    __le__ = __gt__ = __ge__ = __lt__

    def __int__(self):
        return 0

    def __index__(self):
        return 0

    def __float__(self):
        return 0.0

    def __repr__(self):
        return f"<stub {self._name}>"


class _StubBase:
    def __init_subclass__(cls, **kwargs):
        pass

    def __init__(self, *args, **kwargs):
        pass


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        val = _Stub(f"{self.__name__}.{name}")
        setattr(self, name, val)
        return val


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = set(roots)

    def find_spec(self, fullname, path, target=None):
        # A root ("torch") stands for its whole package; a dotted name for that module only.
        if fullname.split(".")[0] in self.roots or fullname in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        m.__version__ = "0.0.0+stub"
        return m

    def exec_module(self, module):
        USED.add(module.__name__)
        for k, v in OVERRIDES.get(module.__name__, {}).items():
            setattr(module, k, v)


# Real values where a placeholder object is not good enough.
OVERRIDES = {
    # vllm compares torch versions (packaging.version) -> must be a real string
    "torch": {"__version__": "2.14.0"},
    # vllm/ir/op.py splits the inferred op schema on " -> "
    "torch.library": {"infer_schema": lambda *a, **k: _fake_infer_schema(*a, **k)},
}


def _fake_infer_schema(fn, *args, **kwargs):
    """Shape-only imitation of torch.library.infer_schema: '(Tensor a, ...) -> Tensor'
    with as many Tensor outputs as the return annotation's tuple has."""
    import inspect
    import typing

    sig = inspect.signature(fn)
    params = ", ".join(f"Tensor {n}" for n in sig.parameters)
    ret = sig.return_annotation
    if isinstance(ret, str):
        n = ret.count("Tensor") or 1
    elif typing.get_origin(ret) is tuple:
        n = len(typing.get_args(ret))
    elif ret is None or ret is type(None):
        return f"({params}) -> ()"
    else:
        n = 1
    rets = ", ".join(["Tensor"] * n)
    return f"({params}) -> " + (rets if n == 1 else f"({rets})")


def install(roots):
    sys.meta_path.insert(0, _Finder(roots))
