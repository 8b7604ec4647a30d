"""`sidecred certs`: write a CA and the webhook's serving certificate.

Writes `ca.crt`, `tls.crt` and `tls.key` into `--out` and prints the base64
`caBundle` for the webhook configurations on stdout. The CA's private key is
not kept: to rotate, run again with `--force` and update the caBundle (or let
cert-manager manage the Secret; the webhook reloads rotated files itself).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path

from sidecred.certs.files import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    FileExistsRefusal,
    ensure_directory,
    existing_files,
    write_file_atomically,
)
from sidecred.certs.generate import (
    DEFAULT_VALIDITY_DAYS,
    build_ca,
    build_serving_certificate,
    ca_bundle,
    certificate_pem,
    private_key_pem,
)

CA_CERT_FILE = "ca.crt"
TLS_CERT_FILE = "tls.crt"
TLS_KEY_FILE = "tls.key"

# Service and namespace names are DNS-1123 labels; anything else cannot be a SAN.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a DNS-1123 label (lower-case letters, digits and '-', at most 63)"
        )
    return value


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days") from None
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError(f"{days} days is outside 1-3650")
    return days


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecred certs",
        description="Write ca.crt, tls.crt and tls.key for the webhook Service and print the caBundle.",
    )
    parser.add_argument("--service", required=True, type=_dns_label, help="webhook Service name")
    parser.add_argument("--namespace", required=True, type=_dns_label, help="webhook namespace")
    parser.add_argument("--out", required=True, type=Path, help="output directory (created 0700)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument(
        "--days",
        type=_days,
        default=DEFAULT_VALIDITY_DAYS,
        help=f"validity in days (default {DEFAULT_VALIDITY_DAYS})",
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    targets = [out / CA_CERT_FILE, out / TLS_CERT_FILE, out / TLS_KEY_FILE]
    if not args.force:
        present = existing_files(targets)
        if present:
            names = ", ".join(str(p) for p in present)
            print(
                f"sidecred certs: refusing to overwrite {names}; pass --force to replace them",
                file=sys.stderr,
            )
            return 1

    now = dt.datetime.now(dt.UTC)
    ca = build_ca(f"sidecred-ca {args.service}.{args.namespace}", now, args.days)
    leaf = build_serving_certificate(ca, args.service, args.namespace, now, args.days)
    try:
        ensure_directory(out)
        # Key before certificate: a reader that sees the new tls.crt finds its key.
        write_file_atomically(
            out / TLS_KEY_FILE, private_key_pem(leaf.key), PRIVATE_FILE_MODE, overwrite=args.force
        )
        write_file_atomically(
            out / TLS_CERT_FILE,
            certificate_pem(leaf.certificate),
            PUBLIC_FILE_MODE,
            overwrite=args.force,
        )
        write_file_atomically(
            out / CA_CERT_FILE,
            certificate_pem(ca.certificate),
            PUBLIC_FILE_MODE,
            overwrite=args.force,
        )
    except FileExistsRefusal as exc:
        print(f"sidecred certs: refusing to overwrite: {exc}; pass --force", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sidecred certs: cannot write to {out}: {exc}", file=sys.stderr)
        return 1
    print(ca_bundle(ca.certificate))
    return 0
