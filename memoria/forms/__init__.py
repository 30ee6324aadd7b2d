"""How each operation runs: its plain torch form, its fast forms, and the registry that declares them.

- ``registry``: the table of operations (each declared once, by its plain form) and the switch that picks a form.
- ``plain``: the executable spec. Readable torch ops that run on any device and give the published results.
- ``cpu``: torch ops for CPU tensors, where reading a value on the host is free and per-row loops beat large index
  tensors.
- ``gpu``: torch ops that never make the host wait for the device (no data-dependent shapes, no host reads).
- ``c``: the optional C extensions (``memoria/native.py``) on CPU tensors.
- ``draw``: the long-term tie-break's CPU forms (MT19937 words drawn as integers, or by the C extension).
- ``ranges``: index ranges and constants the forms (and the store, through ``memoria.ops``) share, made once.

``memoria.ops`` turns the registry into one function per operation; nothing else in the package imports these
modules.
"""
