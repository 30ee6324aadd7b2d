"""The operations with more than one form, declared once, and the one switch that picks a form.

An operation is declared by its plain form (``@operation("argument")`` in ``plain.py``): its name, its docstring, and
the argument whose device picks the form. Its fast forms register under the same name (``@form("cpu")``, ``"gpu"``,
``"c"``), each with an optional check of whether it may run in this process. ``memoria.ops`` makes one wrapper per
operation from this table, ``tests/test_forms.py`` checks every fast form against the plain one, and the list in
``docs/internals.md`` is checked against it (``tests/test_architecture.py``). Adding an operation is one plain form, its
fast forms and its test case.

The switch (``form_for``), read at every call:

- a tensor off the CPU takes the ``gpu`` form (or the plain one where there is none); so does a CPU tensor under
  ``MEMORIA_FORCE_GPU_BRANCHES=1``, which lets tests and op counts run the GPU forms on a CPU machine;
- a CPU tensor takes the ``c`` form where its extension is built and allowed (``MEMORIA_NATIVE``, see
  ``memoria/native.py``) and the form's own check passes, else the ``cpu`` form, else the plain one;
- ``MEMORIA_FORMS=plain`` makes every operation take its plain form.
"""

import inspect
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Union

import torch

FAST_FORMS = ("cpu", "gpu", "c")


@dataclass
class Operation:
    """The forms of one operation; ``usable`` says, per fast form, whether it may run in this process.

    Attributes:
        plain: the plain form, which declares the operation.
        where: the name of the argument whose device picks the form (a tensor, a device, or a list of tensors).
        cpu, gpu, c: the fast forms (``None`` where there is none).
    """

    plain: Callable
    where: str
    cpu: Optional[Callable] = None
    gpu: Optional[Callable] = None
    c: Optional[Callable] = None
    usable: Dict[str, Callable[[], bool]] = field(default_factory=dict)

    def can(self, form: str) -> bool:
        return getattr(self, form) is not None and self.usable.get(form, lambda: True)()

    @property
    def position(self) -> int:
        """Where ``where`` sits among the positional arguments."""
        return list(inspect.signature(self.plain).parameters).index(self.where)


#: Every operation by name, in the order their plain forms are declared.
OPERATIONS: Dict[str, Operation] = {}


def operation(where: str) -> Callable[[Callable], Callable]:
    """Declares an operation by its plain form; ``where`` names the argument whose device picks the form."""

    def declare(plain: Callable) -> Callable:
        if plain.__name__ in OPERATIONS:
            raise ValueError(f"operation {plain.__name__!r} is declared twice")
        OPERATIONS[plain.__name__] = Operation(plain, where)
        return plain

    return declare


def form(kind: str, usable: Optional[Callable[[], bool]] = None, name: Optional[str] = None) -> Callable:
    """Registers a fast form (``kind``: cpu, gpu or c) of the operation ``name`` (default: the function's name)."""
    if kind not in FAST_FORMS:
        raise ValueError(f"a fast form is one of {FAST_FORMS}, got {kind!r}")

    def register(function: Callable) -> Callable:
        declared = OPERATIONS[name or function.__name__]
        setattr(declared, kind, function)
        if usable is not None:
            declared.usable[kind] = usable
        return function

    return register


def gpu_forms_forced() -> bool:
    """Whether ``MEMORIA_FORCE_GPU_BRANCHES=1`` is set: CPU tensors then take the GPU forms."""
    return os.environ.get("MEMORIA_FORCE_GPU_BRANCHES", "0") == "1"


def _device(where) -> torch.device:
    if isinstance(where, torch.Tensor):
        return where.device
    if isinstance(where, (list, tuple)):
        return _device(where[0])
    return where


def on_cpu(where: Union[torch.Tensor, torch.device]) -> bool:
    """Whether a tensor (or device) takes the CPU forms: a CPU one, unless ``MEMORIA_FORCE_GPU_BRANCHES=1``."""
    return _device(where).type == "cpu" and not gpu_forms_forced()


def form_for(name: str, where: Union[torch.Tensor, torch.device]) -> str:
    """The form operation ``name`` takes for tensors on ``where``'s device (see the module docstring)."""
    forms = OPERATIONS[name]
    if os.environ.get("MEMORIA_FORMS") == "plain":
        return "plain"
    if not on_cpu(where):
        return "gpu" if forms.gpu is not None else "plain"
    for kind in ("c", "cpu"):
        if forms.can(kind):
            return kind
    return "plain"


def run(name: str, where: Union[torch.Tensor, torch.device], kind: Optional[str] = None) -> Callable:
    """The function of operation ``name`` in form ``kind`` (default: ``form_for(name, where)``)."""
    return getattr(OPERATIONS[name], kind or form_for(name, where))


def dispatch(name: str) -> Callable:
    """Operation ``name`` with its form picked at every call, for the forms made of other operations."""
    position, argument = None, None

    def call(*args, **kwargs):
        nonlocal position, argument
        if position is None:
            position, argument = OPERATIONS[name].position, OPERATIONS[name].where
        where = args[position] if len(args) > position else kwargs[argument]
        return run(name, where)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call
