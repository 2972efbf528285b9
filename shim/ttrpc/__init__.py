"""ttrpc transport: sans-I/O codec plus anyio server and client."""

from shim.ttrpc.client import TtrpcClient
from shim.ttrpc.codec import (
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
from shim.ttrpc.server import TtrpcServer

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
