"""How requests reach the Task service: ttrpc and gRPC, one method table, RPC errors."""
