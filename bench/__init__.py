"""Benchmarks of containerd-shim-lxcfs vs io.containerd.runc.v2 and lxcfs: `python -m bench`."""
