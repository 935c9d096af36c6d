"""Plain data classes that are cheap to define: the subset of ``dataclasses`` this project uses.

``dataclasses.dataclass`` compiles several methods per class with ``exec``; with ~100 classes
that was half of ptrace's start-up. Here every class shares generic methods driven by a tuple
of field descriptions, so defining a class costs a few microseconds. Supported: ``@dataclass``
and ``@dataclass(frozen=True)``, ``field(default=, default_factory=, kw_only=, repr=,
compare=)``, inheritance (base fields first, keyword-only fields after the positional ones),
``fields()`` and ``replace()``. Frozen classes are hashable; others compare by value and are
unhashable, as with dataclasses.
"""
from __future__ import annotations

_MISSING = object()


class Field:
    __slots__ = ("name", "default", "default_factory", "kw_only", "repr", "compare")

    def __init__(self, default=_MISSING, default_factory=_MISSING, kw_only=False, repr=True,
                 compare=True):
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.kw_only = kw_only
        self.repr = repr
        self.compare = compare

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def field(*, default=_MISSING, default_factory=_MISSING, kw_only=False, repr=True, compare=True):
    return Field(default, default_factory, kw_only, repr, compare)


def fields(obj_or_cls) -> tuple[Field, ...]:
    return tuple(obj_or_cls.__dataclass_fields__.values())


def replace(obj, **changes):
    cls = obj.__class__
    new = cls.__new__(cls)
    for name in cls.__dataclass_fields__:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(obj, name))
    return new


def _init(self, *args, **kwargs):
    fast = self.__class__._record_fast
    if fast is not None and len(args) == fast[0]:
        # every positional field given, the keyword-only ones plain attributes with plain
        # defaults: stored straight into the instance dict (no call per field)
        _, positional, kw_defaults, kw_names = fast
        if not kwargs:
            d = self.__dict__
            d.update(zip(positional, args))
            d.update(kw_defaults)
            return
        if kwargs.keys() <= kw_names:
            d = self.__dict__
            d.update(zip(positional, args))
            d.update(kw_defaults)
            d.update(kwargs)
            return
    positional, names, defaults = self.__class__._record_init
    if len(args) > len(positional):
        raise TypeError(f"{self.__class__.__name__}() takes {len(positional)} positional "
                        f"arguments but {len(args)} were given")
    setter = object.__setattr__
    for name, value in zip(positional, args):
        setter(self, name, value)
    for name in names[len(args):]:
        if name in kwargs:
            value = kwargs.pop(name)
        else:
            value = defaults.get(name, _MISSING)
            if value is _MISSING:
                raise TypeError(f"{self.__class__.__name__}() missing argument: '{name}'")
            if value.__class__ is _Factory:
                value = value.fn()
        setter(self, name, value)
    if kwargs:
        raise TypeError(f"{self.__class__.__name__}() got an unexpected keyword argument "
                        f"'{next(iter(kwargs))}'")


def _plain_fields(cls, names) -> bool:
    """Whether every field is stored in the instance's ``__dict__`` by ``object.__setattr__``
    (instances have a dict, and no field name is a slot, property or other data descriptor)."""
    if not cls.__dictoffset__:
        return False
    for name in names:
        for klass in cls.__mro__:
            if name in klass.__dict__:
                if hasattr(type(klass.__dict__[name]), "__set__"):
                    return False
                break
    return True


class _Factory:
    __slots__ = ("fn",)

    def __init__(self, fn) -> None:
        self.fn = fn


def _repr(self) -> str:
    parts = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__class__._record_repr)
    return f"{self.__class__.__qualname__}({parts})"


def _key(self) -> tuple:
    return tuple(getattr(self, n) for n in self.__class__._record_cmp)


def _eq(self, other):
    if other.__class__ is self.__class__:
        return _key(self) == _key(other)
    return NotImplemented


def _hash(self) -> int:
    return hash((self.__class__.__name__, _key(self)))


def _frozen_setattr(self, name, value):
    raise AttributeError(f"cannot assign to field '{name}' of a frozen {self.__class__.__name__}")


def _build(cls, frozen: bool):
    all_fields: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        all_fields.update(getattr(base, "__dataclass_fields__", {}))
    for name in cls.__dict__.get("__annotations__", {}):
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, Field):
            f = value
            if f.default is not _MISSING:
                setattr(cls, name, f.default)
            else:
                try:
                    delattr(cls, name)
                except AttributeError:
                    pass
        else:
            f = Field(default=value)
        f.name = name
        all_fields[name] = f
    cls.__dataclass_fields__ = all_fields
    positional = tuple(n for n, f in all_fields.items() if not f.kw_only)
    kw_only = tuple(n for n, f in all_fields.items() if f.kw_only)
    defaults = {}
    for n, f in all_fields.items():
        if f.default is not _MISSING:
            defaults[n] = f.default
        elif f.default_factory is not _MISSING:
            defaults[n] = _Factory(f.default_factory)
    cls._record_init = (positional, positional + kw_only, defaults)
    cls._record_fast = None
    if all(n in defaults and defaults[n].__class__ is not _Factory for n in kw_only) and \
            _plain_fields(cls, all_fields):
        cls._record_fast = (len(positional), positional, {n: defaults[n] for n in kw_only},
                            frozenset(kw_only))
    cls._record_repr = tuple(n for n, f in all_fields.items() if f.repr)
    cls._record_cmp = tuple(n for n, f in all_fields.items() if f.compare)
    cls.__match_args__ = positional
    if "__init__" not in cls.__dict__:
        cls.__init__ = _init
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = _repr
    if "__eq__" not in cls.__dict__:
        cls.__eq__ = _eq
    if frozen and cls.__dict__.get("__hash__") is None:     # (a class may bring its own)
        cls.__hash__ = _hash
        cls.__setattr__ = _frozen_setattr
    elif "__hash__" not in cls.__dict__:
        cls.__hash__ = None
    return cls


def dataclass(cls=None, *, frozen: bool = False, eq: bool = True, repr: bool = True):
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)
