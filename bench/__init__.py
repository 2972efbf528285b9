"""Benchmarks of containerd-shim-lxcfs against io.containerd.runc.v2 and lxcfs (`python -m bench`)."""
