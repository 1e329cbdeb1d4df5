"""Types of the compiled TLS wire walkers (tls_wire.pyx)."""

CONTENT_CHANGE_CIPHER_SPEC: int
CONTENT_ALERT: int
CONTENT_HANDSHAKE: int
CONTENT_APPLICATION_DATA: int
HANDSHAKE_CLIENT_HELLO: int
HANDSHAKE_CERTIFICATE: int
EXT_SERVER_NAME: int
EXT_ALPN: int
EXT_SUPPORTED_VERSIONS: int
EXT_ECH: int
MAX_HANDSHAKE_LENGTH: int
MAX_RECORD_LENGTH: int
MAX_CERTIFICATE: int

def client_hello(
    data: bytes,
) -> (
    tuple[str | None, tuple[str, ...], tuple[int, ...], int, bool, tuple[int, ...], tuple[int, ...]]
    | None
): ...
def client_hello_handshake(
    msg: bytes,
) -> (
    tuple[str | None, tuple[str, ...], tuple[int, ...], int, bool, tuple[int, ...], tuple[int, ...]]
    | None
): ...
def looks_like_client_hello(data: bytes) -> bool: ...
def server_flight(data: bytes) -> tuple[int, int, bool, list[bytes]]: ...
