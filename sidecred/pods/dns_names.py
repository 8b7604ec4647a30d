"""Kubernetes object names: namespaces are DNS-1123 labels, pods, service accounts and
Secrets DNS-1123 subdomains. Checked before a name is looked up, logged or remembered."""

from __future__ import annotations

import re

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_RE = re.compile(_LABEL)
DNS1123_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def is_dns1123_label(value: object) -> bool:
    """A namespace name: at most 63 of a-z, 0-9 and '-', starting and ending alphanumeric."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= DNS1123_LABEL_MAX
        and DNS1123_LABEL_RE.fullmatch(value) is not None
    )


def is_dns1123_subdomain(value: object) -> bool:
    """An object name such as a pod's: dot-separated labels, at most 253 characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= DNS1123_SUBDOMAIN_MAX
        and DNS1123_SUBDOMAIN_RE.fullmatch(value) is not None
    )
