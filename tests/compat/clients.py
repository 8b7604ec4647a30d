"""The real SDK clients of the compatibility matrix: how to run each, and what to expect.

Each client program resolves credentials through its SDK's default chain, calls
sts:GetCallerIdentity and prints the caller's ARN. What a client should manage
depends on its SDK version (README.md, "SDK compatibility"), so the expected outcome is
derived from the version the tool reports, never assumed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPAT_DIR = REPO / "tests" / "compat"
# scripts/install-sdks puts the pinned venvs and the Go build cache here (git-ignored).
VENVS = REPO / ".venv-compat"
OLD_BOTOCORE_VENV = VENVS / "botocore-1.34.41"
AWSCLI_V1_VENV = VENVS / "awscli-v1"
DEBIAN_AWSCLI = Path("/usr/bin/aws")  # Debian's CLI v2; `aws` on PATH may be a pip CLI v1
GO_SDK_SRC = Path("/usr/share/gocode/src/github.com/aws/aws-sdk-go")
GO_SDK_V2_SRC = Path("/usr/share/gocode/src/github.com/aws/aws-sdk-go-v2")
# The Go SDK v2's default chain lives in its `config` module, versioned on its own.
GO_SDK_V2_CONFIG_VERSION = GO_SDK_V2_SRC / "config" / "go_module_metadata.go"

TOKEN_MODES = ("file", "env")
CLIENT_TIMEOUT = 120  # seconds; a bound for a hung client, not a timing assertion

Version = tuple[int, ...]


def parse_version(text: str) -> Version:
    """`aws-cli/2.9.19 Python/...` or `1.44.133` -> (2, 9, 19) / (1, 44, 133)."""
    word = text.strip().split()[0] if text.strip() else ""
    word = word.rsplit("/", 1)[-1].lstrip("v")
    parts = []
    for piece in word.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise ValueError(f"no version number in {text!r}")
    return tuple(parts)


def format_version(version: Version) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class Client:
    """One SDK client program.

    `command(endpoint_url)` is the argv of one GetCallerIdentity call; SDKs that
    read AWS_ENDPOINT_URL_STS ignore the argument. `token_file_since` is the first
    version whose default chain sends the AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
    token; `full_uri_since` the first that uses AWS_CONTAINER_CREDENTIALS_FULL_URI.
    """

    id: str
    label: str
    command: Callable[[str], list[str]]
    version_command: list[str]
    token_file_since: Version
    full_uri_since: Version = (0,)
    needs: list[Path] = field(default_factory=list)
    note: str = ""

    def missing(self) -> str | None:
        """Why this client cannot run here, or None."""
        for path in self.needs:
            if not path.exists():
                return f"{path} not found (run scripts/install-sdks)"
        return None

    def expected_to_work(self, token_mode: str, version: Version) -> bool:
        if version < self.full_uri_since:
            return False
        return token_mode == "env" or version >= self.token_file_since

    def read_version(self) -> Version:
        out = subprocess.run(
            self.version_command, capture_output=True, text=True, timeout=60, check=True
        )
        # Some tools print their version on stderr (older AWS CLI v1).
        return parse_version(out.stdout or out.stderr)

    def run(self, sts_url: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
        """One GetCallerIdentity call with exactly `env`."""
        return subprocess.run(
            self.command(sts_url),
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
        )


def outcome(run: subprocess.CompletedProcess[str]) -> str:
    """A client run's exit code and output, for an assertion's message."""
    return f"exit {run.returncode}\nstdout: {run.stdout}\nstderr: {run.stderr[-3000:]}"


def _which(name: str) -> Path:
    found = shutil.which(name)
    return Path(found) if found else Path(f"<{name} not on PATH>")


@dataclass(frozen=True)
class GoClients:
    """The session's builds of tests/compat/go (SDK v1) and tests/compat/go-v2 (SDK v2)."""

    v1: Path
    v2: Path


def _aws_cli(
    id: str, label: str, aws: Path, token_file_since: Version, *, endpoint_flag: bool = False
) -> Client:
    """An AWS CLI: `aws sts get-caller-identity` prints the ARN, `aws --version` the version."""
    call = [str(aws), "sts", "get-caller-identity", "--query", "Arn", "--output", "text"]
    return Client(
        id=id,
        label=label,
        command=lambda url: call + (["--endpoint-url", url] if endpoint_flag else []),
        version_command=[str(aws), "--version"],
        token_file_since=token_file_since,
        needs=[aws],
    )


def build_clients(go: GoClients) -> list[Client]:
    """The matrix's clients."""
    whoami_py = str(COMPAT_DIR / "python" / "whoami.py")
    old_python = OLD_BOTOCORE_VENV / "bin" / "python"
    cli_v1 = AWSCLI_V1_VENV / "bin" / "aws"
    node, ruby = _which("node"), _which("ruby")
    whoami_js = COMPAT_DIR / "js" / "whoami.mjs"
    whoami_js_v2 = COMPAT_DIR / "js" / "whoami-v2.mjs"
    # go_module_metadata.go holds `const goModuleVersion = "1.17.10"`.
    go_v2_version = [
        sys.executable,
        "-c",
        'import re, sys; print(re.search(r\'goModuleVersion = "([^"]+)"\', '
        "open(sys.argv[1]).read())[1])",
        str(GO_SDK_V2_CONFIG_VERSION),
    ]
    whoami_rb = COMPAT_DIR / "ruby" / "whoami.rb"
    return [
        Client(
            id="boto3-current",
            label="boto3/botocore (current)",
            command=lambda _url: [sys.executable, whoami_py],
            version_command=[sys.executable, whoami_py, "--version"],
            token_file_since=(1, 34, 41),
        ),
        Client(
            id="boto3-1.34.41",
            label="boto3/botocore 1.34.41 (oldest that re-reads the token file)",
            command=lambda _url: [str(old_python), whoami_py],
            version_command=[str(old_python), whoami_py, "--version"],
            token_file_since=(1, 34, 41),
            needs=[old_python],
        ),
        _aws_cli("awscli-v1", "AWS CLI v1 (pip)", cli_v1, (1, 30, 0)),
        Client(
            id="js-v3",
            label="AWS SDK for JavaScript v3 (npm)",
            command=lambda _url: [str(node), str(whoami_js)],
            version_command=[str(node), str(whoami_js), "--version"],
            # 3.458.0 added the token file to fromHttp only; the default chain uses it from 3.503.1.
            token_file_since=(3, 503, 1),
            needs=[node, COMPAT_DIR / "js" / "node_modules" / "@aws-sdk" / "client-sts"],
        ),
        Client(
            id="js-v3-3.458.0",
            label="AWS SDK for JavaScript v3 3.458.0 (npm, first with fromHttp)",
            command=lambda url: [str(node), str(whoami_js), "--min", "--endpoint-url", url],
            version_command=[str(node), str(whoami_js), "--min", "--version"],
            token_file_since=(3, 503, 1),
            needs=[node, COMPAT_DIR / "js" / "node_modules" / "client-sts-min"],
        ),
        # CLI v2 before 2.13 ignores AWS_ENDPOINT_URL_STS.
        _aws_cli(
            "awscli-v2-debian",
            "AWS CLI v2 (Debian awscli)",
            DEBIAN_AWSCLI,
            (2, 15, 0),
            endpoint_flag=True,
        ),
        Client(
            id="go-v1-debian",
            label="AWS SDK for Go v1 (Debian golang-github-aws-aws-sdk-go-dev)",
            command=lambda url: [str(go.v1), "-endpoint-url", url],
            version_command=[str(go.v1), "-version"],
            token_file_since=(1, 47, 11),
            needs=[go.v1],
        ),
        Client(
            id="go-v2-debian",
            label="AWS SDK for Go v2 (Debian golang-github-aws-aws-sdk-go-v2-dev; config module)",
            command=lambda url: [str(go.v2), "-endpoint-url", url],
            version_command=go_v2_version,
            # config v1.25.0 (2023-11-14): "dynamic auth token from file" in the HTTP provider.
            token_file_since=(1, 25, 0),
            needs=[go.v2, GO_SDK_V2_CONFIG_VERSION],
        ),
        Client(
            id="js-v2",
            label="AWS SDK for JavaScript v2 (npm aws-sdk)",
            command=lambda url: [str(node), str(whoami_js_v2), "--endpoint-url", url],
            version_command=[str(node), str(whoami_js_v2), "--version"],
            # The minimum EKS Pod Identity's documentation gives for JS v2; the
            # installed release reads the file (lib/credentials/remote_credentials.js,
            # getECSAuthToken).
            token_file_since=(2, 1550, 0),
            needs=[node, COMPAT_DIR / "js" / "node_modules" / "aws-sdk"],
        ),
        Client(
            id="ruby-core-debian",
            label="Ruby aws-sdk-core (Debian ruby-aws-sdk-core)",
            command=lambda url: [str(ruby), str(whoami_rb), url],
            version_command=[str(ruby), str(whoami_rb), "--version"],
            token_file_since=(3, 188, 0),
            # 3.168.1's default chain reads only AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (fixed
            # host 169.254.170.2, no Authorization header), so it cannot reach a sidecar. When
            # FULL_URI support arrived is not pinned down here; 3.188.0 (token file) has it.
            full_uri_since=(3, 188, 0),
            needs=[ruby],
            note="default chain ignores AWS_CONTAINER_CREDENTIALS_FULL_URI; needs >= 3.188.0",
        ),
    ]
