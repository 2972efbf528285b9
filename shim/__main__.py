"""`python -m shim` is the same program as the `containerd-shim-lxcfs-v2` console script."""

from shim.entry.cli import run

run()
