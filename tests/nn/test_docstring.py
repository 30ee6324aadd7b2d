"""The usage example in memoria.nn's module docstring runs as written."""

import re

import memoria.nn


def test_the_package_example_runs():
    blocks = re.findall(
        r"Example \(one memory read in a model of your own\)::\n\n(.*?)\n\n[A-Z]", memoria.nn.__doc__, re.S
    )
    assert len(blocks) == 1
    code = "\n".join(line[4:] for line in blocks[0].splitlines())
    namespace: dict = {}
    exec(compile(code, "memoria/nn/__init__.py", "exec"), namespace)
    layer = namespace["layer"]
    assert layer.previous_hidden is None and layer.memory.memoria.memory_length == 0  # reset at the end
    assert namespace["hidden"].shape == (2, 32, 64)
