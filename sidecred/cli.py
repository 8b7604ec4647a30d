"""The `sidecred` console script: dispatch to one subcommand, importing only it.

The sidecar runs in every pod, so `sidecred sidecar` must not pay for the
webhook's imports (FastAPI, the kubernetes client). Each subcommand lives in
its own module exposing `main(argv: list[str]) -> int`; only the chosen one is
imported.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "certs": ("sidecred.certs.cli", "write a CA and the webhook's serving certificate"),
    "webhook": ("sidecred.webhook.serve_cli", "run the admission webhook over TLS"),
    "broker": ("sidecred.broker.serve_cli", "run the credential broker over TLS"),
    "sidecar": ("sidecred.sidecar.main", "run the credential server (settings from env)"),
    "fetch": (
        "sidecred.sidecar.fetch",
        "get the pod's credentials once, as credential_process JSON (sidecar env)",
    ),
    "check": (
        "sidecred.webhook.check_cli",
        "offline: print the admission decision and patched pod",
    ),
    "demo": ("sidecred.dev.demo", "run the whole flow locally on an embedded STS emulator"),
}


def usage() -> str:
    lines = ["usage: sidecred COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `sidecred COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from sidecred import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"sidecred: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as exc:
        # The images leave parts out (the demo; in the sidecar image all but `sidecar` and
        # `fetch`): say so instead of a traceback.
        print(
            f"sidecred: `sidecred {name}` is not part of this installation "
            f"(no module named {exc.name!r}); the images leave out the demo, and the sidecar "
            "image runs only `sidecar` and `fetch`",
            file=sys.stderr,
        )
        return 2
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
