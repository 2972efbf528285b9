"""containerd-shim-lxcfs: entry/ (the binary's modes) -> task/ (the Task service) ->
transport/ (ttrpc, gRPC) and oci/ (the spec rewrite) -> the stdlib-only modules here."""
