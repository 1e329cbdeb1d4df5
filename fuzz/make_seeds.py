"""Write the atheris seed corpora from samples/, ../shared/corpus and tests/factories."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dsaudit.decode.batch import decode_batch  # noqa: E402
from dsaudit.decode.packet_kernel import C_PAY_LEN, C_PAY_OFF  # noqa: E402
from dsaudit.errors import DsauditError  # noqa: E402
from dsaudit.sources.capture_file import CaptureReader  # noqa: E402
from tests import factories as fx  # noqa: E402

CAPTURE_DIRS = [ROOT / "samples", ROOT / ".." / "shared" / "corpus" / "pcaps"]
MAX_CAPTURE_SEED = 64 * 1024  # libFuzzer works best on small inputs; a cut file is still a seed
MAX_PAYLOAD_SEED = 4096
PAYLOADS_PER_CAPTURE = 40


def captures() -> list[Path]:
    """Every pcap and pcapng file of the sample and corpus folders that exist."""
    found: list[Path] = []
    for folder in CAPTURE_DIRS:
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix in (".pcap", ".pcapng"))
    return found


def _write(folder: Path, data: bytes) -> bool:
    name = folder / hashlib.sha1(data).hexdigest()
    if name.exists():
        return False
    name.write_bytes(data)
    return True


def capture_seeds(out: Path) -> int:
    """Each capture's first 64 KiB, and small ones gzipped as well."""
    count = 0
    for path in captures():
        data = path.read_bytes()[:MAX_CAPTURE_SEED]
        count += _write(out, data)
        if len(data) <= 8192:
            count += _write(out, gzip.compress(data, mtime=0))
    return count


def builder_payloads() -> list[bytes]:
    """Well-formed messages of every protocol the naming stage parses."""
    return [
        fx.client_hello("seed.example", records=2, ech=True),
        fx.client_hello_handshake(sni="seed.example"),
        fx.dns_query("seed.example"),
        fx.dns_response(
            "www.seed.example", [("e.seed.example", 1, "192.0.2.1", 9)], ["e.seed.example"]
        ),
        fx.dns_response("v6.seed.example", [("v6.seed.example", 28, "2001:db8::1", 9)]),
        fx.dns_tcp(fx.dns_query("a.example"), fx.dns_query("b.example")),
        fx.http_request("seed.example"),
        fx.http_request("seed.example:443", method="CONNECT", target="seed.example:443"),
        b"HTTP/1.1 200 Connection established\r\n\r\n",
        fx.socks5_request("seed.example", 443, auth=(b"user", b"pass")),
        fx.socks5_request("2001:db8::5", 443),
        fx.socks4a_request("seed.example", 80, userid=b"me"),
        fx.socks4_request("192.0.2.3", 80),
        fx.quic_client_initial(fx.client_hello_handshake(sni="seed.example"), pad_to=300),
    ]


def capture_payloads(path: Path) -> list[bytes]:
    """Transport payloads of the first packets of a capture (what the parsers really see)."""
    out: list[bytes] = []
    try:
        for batch in CaptureReader(str(path)):
            rec, k = decode_batch(batch)
            for row in rec[:k]:
                size = int(row[C_PAY_LEN])
                if size > 0:
                    start = int(row[C_PAY_OFF])
                    out.append(bytes(batch.buf[start : start + min(size, MAX_PAYLOAD_SEED)]))
                if len(out) >= PAYLOADS_PER_CAPTURE:
                    return out
    except DsauditError:
        pass
    return out


def payload_seeds(out: Path) -> int:
    count = sum(_write(out, data) for data in builder_payloads())
    for path in captures():
        count += sum(_write(out, data) for data in capture_payloads(path))
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parent / "corpus"
    parser.add_argument("--out", type=Path, default=default, help=f"default: {default}")
    args = parser.parse_args(argv)
    made = {}
    for name, fill in (("capture", capture_seeds), ("payloads", payload_seeds)):
        folder = args.out / name
        os.makedirs(folder, exist_ok=True)
        made[name] = fill(folder)
    for name, count in made.items():
        print(f"{args.out / name}: {count} new seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
