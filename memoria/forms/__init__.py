"""How each operation with more than one form runs: the plain torch form and its fast forms.

- ``plain``: the executable spec. Readable torch ops that run on any device and give the published results.
- ``cpu``: torch ops for CPU tensors, where reading a value on the host is free and per-row loops beat large index
  tensors.
- ``gpu``: torch ops that never make the host wait for the device (no data-dependent shapes, no host reads).
- ``c``: the optional C extensions (``memoria/native.py``) on CPU tensors.
- ``ranges``: index ranges and constants the forms (and the store, through ``memoria.ops``) share, made once.

``memoria.ops`` holds the table of forms and the one switch that chooses among them; nothing else imports these
modules directly.
"""
