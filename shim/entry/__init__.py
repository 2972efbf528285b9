"""The binary's modes: how containerd (and an operator) runs `containerd-shim-lxcfs-v2`.

`start` and `delete` run once per container on containerd's critical path: their modules
import only each other and the stdlib-only ground (shim/*.py), never task/ or transport/.
"""
