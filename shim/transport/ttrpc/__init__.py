"""ttrpc transport: sans-I/O codec plus anyio server and client."""

from shim.transport.ttrpc.client import TtrpcClient
from shim.transport.ttrpc.codec import (
    MAX_DATA_SIZE,
    ClientConnection,
    FrameTooLarge,
    LocalProtocolError,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    ServerConnection,
    StreamError,
)
from shim.transport.ttrpc.server import TtrpcServer

__all__ = [
    "MAX_DATA_SIZE",
    "ClientConnection",
    "FrameTooLarge",
    "LocalProtocolError",
    "ProtocolError",
    "RequestReceived",
    "ResponseReceived",
    "ServerConnection",
    "StreamError",
    "TtrpcClient",
    "TtrpcServer",
]
