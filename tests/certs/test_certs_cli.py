"""`sidecred certs`: files, permissions, refusal to overwrite, and a chain that verifies."""

from __future__ import annotations

import base64
import datetime as dt
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from sidecred.certs.cli import main
from sidecred.certs.generate import service_dns_names

SERVICE, NAMESPACE = "sidecred", "sidecred-system"


def run_certs(out: Path, *extra: str) -> tuple[int, str]:
    """Run the real CLI in a subprocess (the way operators run it)."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "sidecred.cli", "certs"),
            *("--service", SERVICE, "--namespace", NAMESPACE, "--out", str(out)),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def load(out: Path) -> tuple[x509.Certificate, x509.Certificate]:
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    leaf = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    return ca, leaf


def test_writes_four_files_with_private_modes(tmp_path: Path) -> None:
    out = tmp_path / "new" / "certs"
    code, output = run_certs(out)
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert stat.S_IMODE((out / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "tls.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "ca.crt").stat().st_mode) == 0o644
    key = load_pem_private_key((out / "tls.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    _, leaf = load(out)
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()


def test_ca_bundle_on_stdout_decodes_to_ca_crt(tmp_path: Path) -> None:
    code, output = run_certs(tmp_path)
    assert code == 0
    lines = output.strip().splitlines()
    assert len(lines) == 1
    assert base64.b64decode(lines[0], validate=True) == (tmp_path / "ca.crt").read_bytes()


def test_a_second_run_renews_the_serving_certificate_from_the_kept_ca(tmp_path: Path) -> None:
    code, first_bundle = run_certs(tmp_path)
    assert code == 0
    ca, leaf = load(tmp_path)
    ca_key = (tmp_path / "ca.key").read_bytes()
    code, second_bundle = run_certs(tmp_path)
    assert code == 0
    renewed_ca, renewed = load(tmp_path)
    assert renewed.serial_number != leaf.serial_number
    assert renewed_ca == ca and (tmp_path / "ca.key").read_bytes() == ca_key
    assert second_bundle == first_bundle  # the webhook configurations need no update
    renewed.verify_directly_issued_by(ca)


def test_refuses_to_overwrite_files_without_a_ca_key(tmp_path: Path) -> None:
    assert run_certs(tmp_path)[0] == 0
    (tmp_path / "ca.key").unlink()  # as an older sidecred certs left them
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, output = run_certs(tmp_path)
    assert code == 1
    assert "refusing to overwrite" in output and "--force" in output
    assert "Traceback" not in output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _bundle(out: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((out / "ca.crt").read_bytes())


def _verifies(leaf: x509.Certificate, bundle: list[x509.Certificate]) -> bool:
    verifier = (
        PolicyBuilder()
        .store(Store(bundle))
        .build_server_verifier(x509.DNSName(f"{SERVICE}.{NAMESPACE}.svc"))
    )
    try:
        verifier.verify(leaf, [])
    except VerificationError:
        return False
    return True


def test_ca_rotation_never_serves_a_certificate_the_published_bundle_rejects(
    tmp_path: Path,
) -> None:
    # The API server holds the bundle published at each step while the webhook may
    # still serve the previous step's certificate (or already the new one): every
    # pairing that can meet must verify.
    assert run_certs(tmp_path)[0] == 0
    old_ca, old_leaf = load(tmp_path)
    old_bundle = _bundle(tmp_path)

    assert run_certs(tmp_path, "--rotate-ca")[0] == 0  # step 1: publish both CAs
    both = _bundle(tmp_path)
    assert len(both) == 2 and both[1] == old_ca
    assert load(tmp_path)[1] == old_leaf  # the served certificate does not change yet
    assert _verifies(old_leaf, old_bundle) and _verifies(old_leaf, both)

    assert run_certs(tmp_path, "--drop-old-cas")[0] == 1  # too early: tls.crt is the old CA's
    assert _bundle(tmp_path) == both

    assert run_certs(tmp_path)[0] == 0  # step 2: serve a certificate from the new CA
    new_leaf = load(tmp_path)[1]
    new_leaf.verify_directly_issued_by(both[0])
    assert _bundle(tmp_path) == both
    assert _verifies(new_leaf, both) and _verifies(old_leaf, both)

    code, output = run_certs(tmp_path, "--drop-old-cas")  # step 3: only the new CA
    assert code == 0, output
    assert _bundle(tmp_path) == [both[0]]
    assert _verifies(new_leaf, [both[0]]) and not _verifies(new_leaf, old_bundle)
    assert base64.b64decode(output.strip()) == (tmp_path / "ca.crt").read_bytes()


def test_rotation_needs_a_kept_ca(tmp_path: Path) -> None:
    code, output = run_certs(tmp_path, "--rotate-ca")
    assert code == 1 and "no CA" in output and "Traceback" not in output


def test_refuses_when_only_one_file_exists(tmp_path: Path) -> None:
    (tmp_path / "tls.key").write_text("mine")
    assert main(["--service", SERVICE, "--namespace", NAMESPACE, "--out", str(tmp_path)]) == 1
    assert (tmp_path / "tls.key").read_text() == "mine"
    assert not (tmp_path / "ca.crt").exists()


def test_force_replaces_with_a_new_ca_and_serial(tmp_path: Path) -> None:
    assert run_certs(tmp_path)[0] == 0
    old_ca, old_leaf = load(tmp_path)
    code, _ = run_certs(tmp_path, "--force")
    assert code == 0
    new_ca, new_leaf = load(tmp_path)
    assert new_leaf.serial_number != old_leaf.serial_number
    assert new_ca.serial_number != old_ca.serial_number
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("name", service_dns_names(SERVICE, NAMESPACE))
def test_chain_verifies_for_every_service_name(tmp_path: Path, name: str) -> None:
    assert run_certs(tmp_path)[0] == 0
    ca, leaf = load(tmp_path)
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName(name))
    chain = verifier.verify(leaf, [])
    assert chain[-1] == ca


def test_chain_rejects_a_foreign_name(tmp_path: Path) -> None:
    assert run_certs(tmp_path)[0] == 0
    ca, leaf = load(tmp_path)
    verifier = (
        PolicyBuilder()
        .store(Store([ca]))
        .build_server_verifier(x509.DNSName("other.sidecred-system.svc"))
    )
    with pytest.raises(VerificationError):
        verifier.verify(leaf, [])


def test_certificate_extensions(tmp_path: Path) -> None:
    assert run_certs(tmp_path, "--days", "30")[0] == 0
    ca, leaf = load(tmp_path)
    ca_bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_bc.critical and ca_bc.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    leaf_bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert not leaf_bc.value.ca
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert leaf.signature_hash_algorithm is not None
    assert leaf.signature_hash_algorithm.name == "sha256"
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert dt.timedelta(days=30) <= lifetime <= dt.timedelta(days=30, minutes=10)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--service", "Bad_Name", "--namespace", "ns"], "DNS-1123"),
        (["--service", "svc", "--namespace", "ns", "--days", "0"], "outside"),
        (["--service", "svc", "--namespace", "ns", "--days", "ten"], "whole number"),
    ],
)
def test_bad_arguments_get_a_clear_error(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
