"""`sidecred certs`: keep a CA and issue the webhook's serving certificate.

Writes `ca.crt` (the caBundle: the CA, plus the previous one during a rotation),
`ca.key` (0600), `tls.crt` and `tls.key` into `--out`, and prints the base64
`caBundle` for the webhook configurations on stdout.

- first run: a new CA and a serving certificate;
- later runs: a new serving certificate from the kept CA; the caBundle stays;
- `--rotate-ca`: a new CA, published beside the old one; the serving
  certificate stays (signed by the old CA) until the next run;
- `--drop-old-cas`: the bundle keeps only the current CA, once it signed tls.crt;
- `--force`: start over with a new CA (the caBundle changes at once).
The step-by-step rotation is in certs/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from sidecred.certs.files import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    ensure_directory,
    existing_files,
    write_file_atomically,
)
from sidecred.certs.generate import (
    DEFAULT_CA_VALIDITY_DAYS,
    DEFAULT_VALIDITY_DAYS,
    IssuedCertificate,
    build_ca,
    build_serving_certificate,
    bundle_pem,
    ca_bundle,
    certificate_pem,
    issued_by,
    load_ca,
    private_key_pem,
    still_valid,
)
from sidecred.int_range import int_in_range_type
from sidecred.jsonlog import add_log_level_argument
from sidecred.serving.cli import configure_logging

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecred certs",
        description="Keep a CA in --out, issue the webhook's serving certificate, print the caBundle.",
    )
    parser.add_argument("--service", required=True, type=_dns_label, help="webhook Service name")
    parser.add_argument("--namespace", required=True, type=_dns_label, help="webhook namespace")
    parser.add_argument("--out", required=True, type=Path, help="output directory (created 0700)")
    add_log_level_argument(parser)
    step = parser.add_mutually_exclusive_group()
    step.add_argument("--rotate-ca", action="store_true",
                      help="start a new CA; the bundle holds both until --drop-old-cas")  # fmt: skip
    step.add_argument("--drop-old-cas", action="store_true",
                      help="finish a rotation: the bundle keeps only the current CA")  # fmt: skip
    step.add_argument("--force", action="store_true", help="start over with a new CA")
    parser.add_argument(
        "--days",
        type=int_in_range_type("--days", 1, 3650, unit="days"),
        default=DEFAULT_VALIDITY_DAYS,
        help=f"serving certificate validity in days (default {DEFAULT_VALIDITY_DAYS})",
    )
    parser.add_argument(
        "--ca-days",
        type=int_in_range_type("--ca-days", 1, 3650, unit="days"),
        default=DEFAULT_CA_VALIDITY_DAYS,
        help=f"a new CA's validity in days (default {DEFAULT_CA_VALIDITY_DAYS})",
    )
    return parser


class CertsRefusal(Exception):
    """The files on disk do not allow the requested step; exit status 1."""


@dataclass
class Plan:
    """What to write: the current CA, the bundle, and a new serving certificate (or None)."""

    ca: IssuedCertificate
    bundle: list[x509.Certificate]
    leaf: IssuedCertificate | None
    note: str = ""


def plan_files(args: argparse.Namespace, now: dt.datetime) -> Plan:
    """Decide from the files in --out and the flags; pure apart from reading and key generation."""
    out: Path = args.out
    new_ca = build_ca(f"sidecred-ca {args.service}.{args.namespace}", now, args.ca_days)
    kept = (out / CA_KEY_FILE).exists()
    if args.force or not kept:
        present = existing_files(
            [out / name for name in (CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE)]
        )
        if present and not args.force:
            names = ", ".join(str(p) for p in present)
            raise CertsRefusal(f"refusing to overwrite {names} (no {CA_KEY_FILE} to keep the CA); "
                               "pass --force to start over with a new CA and caBundle")  # fmt: skip
        if args.rotate_ca or args.drop_old_cas:
            raise CertsRefusal(
                f"no CA in {out} to rotate; run without --rotate-ca/--drop-old-cas first"
            )
        leaf = build_serving_certificate(new_ca, args.service, args.namespace, now, args.days)
        return Plan(new_ca, [new_ca.certificate], leaf)
    try:
        ca, others = load_ca((out / CA_KEY_FILE).read_bytes(), (out / CA_CERT_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        raise CertsRefusal(f"cannot use the CA in {out}: {exc}") from None
    others = still_valid(others, now)
    if args.rotate_ca:
        note = ("new CA added to the bundle; deploy this caBundle, then run again without "
                "--rotate-ca to issue tls.crt from the new CA")  # fmt: skip
        return Plan(new_ca, [new_ca.certificate, ca.certificate, *others], None, note)
    if args.drop_old_cas:
        try:
            leaf_cert = x509.load_pem_x509_certificate((out / TLS_CERT_FILE).read_bytes())
        except (OSError, ValueError) as exc:
            raise CertsRefusal(f"cannot read {out / TLS_CERT_FILE}: {exc}") from None
        if not issued_by(leaf_cert, ca.certificate):
            raise CertsRefusal("tls.crt is not yet issued by the current CA; run without "
                               "--drop-old-cas first, and deploy that Secret")  # fmt: skip
        return Plan(ca, [ca.certificate], None)
    leaf = build_serving_certificate(ca, args.service, args.namespace, now, args.days)
    return Plan(ca, [ca.certificate, *others], leaf)


def write_plan(out: Path, plan: Plan) -> None:
    ensure_directory(out)
    # Keys before certificates: a reader that sees a new certificate finds its key.
    write_file_atomically(
        out / CA_KEY_FILE, private_key_pem(plan.ca.key), PRIVATE_FILE_MODE, overwrite=True
    )
    if plan.leaf is not None:
        write_file_atomically(
            out / TLS_KEY_FILE, private_key_pem(plan.leaf.key), PRIVATE_FILE_MODE, overwrite=True
        )
        write_file_atomically(
            out / TLS_CERT_FILE,
            certificate_pem(plan.leaf.certificate),
            PUBLIC_FILE_MODE,
            overwrite=True,
        )
    write_file_atomically(
        out / CA_CERT_FILE, bundle_pem(plan.bundle), PUBLIC_FILE_MODE, overwrite=True
    )


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        plan = plan_files(args, dt.datetime.now(dt.UTC))
        write_plan(args.out, plan)
    except CertsRefusal as exc:
        print(f"sidecred certs: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sidecred certs: cannot write to {args.out}: {exc}", file=sys.stderr)
        return 1
    if plan.note:
        print(f"sidecred certs: {plan.note}", file=sys.stderr)
    print(ca_bundle(plan.bundle))
    return 0
