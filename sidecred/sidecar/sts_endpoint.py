"""Where STS is, and how to reach it: endpoint, proxy and CA settings from the environment.

Pure functions of an env mapping, resolved the way the AWS SDKs resolve them:

- `AWS_ENDPOINT_URL_STS`, then `AWS_ENDPOINT_URL` (both ignored when
  `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is true);
- else the regional endpoint `https://sts.<region>.<partition suffix>`, with
  `sts-fips.` when `AWS_USE_FIPS_ENDPOINT` is true (GovCloud's regional endpoints
  are FIPS already) and the dual-stack suffix with `AWS_USE_DUALSTACK_ENDPOINT`;
  the global `https://sts.amazonaws.com` only when no region is known;
- `HTTPS_PROXY`/`HTTP_PROXY` for the endpoint's scheme unless `NO_PROXY` names
  the host (lower-case names win, as in the SDKs' HTTP stacks);
- `AWS_CA_BUNDLE`: the CA certificates to verify STS (and the proxy's tunnel) with.
"""

from __future__ import annotations

from collections.abc import Mapping

# Region prefix -> (DNS suffix, dual-stack DNS suffix), first match wins; `aws` last.
_PARTITIONS = (
    ("cn-", "amazonaws.com.cn", "api.amazonwebservices.com.cn"),
    ("us-gov-", "amazonaws.com", "api.aws"),
    ("us-isob-", "sc2s.sgov.gov", "sc2s.sgov.gov"),
    ("us-iso-", "c2s.ic.gov", "c2s.ic.gov"),
    ("", "amazonaws.com", "api.aws"),
)
GLOBAL_ENDPOINT = "https://sts.amazonaws.com"


class EndpointError(ValueError):
    """An endpoint or proxy setting that cannot be used; the message names it."""


def _true(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def resolve_region(env: Mapping[str, str], configured: str | None) -> str | None:
    """The sidecar's own region setting, else the SDKs' `AWS_REGION` / `AWS_DEFAULT_REGION`."""
    for value in (configured, env.get("AWS_REGION"), env.get("AWS_DEFAULT_REGION")):
        if value and value.strip():
            return value.strip()
    return None


def sts_endpoint(env: Mapping[str, str], region: str | None) -> str:
    """The STS base URL for `region` under the settings in `env` (no trailing slash)."""
    if not _true(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        for name in ("AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"):
            url = env.get(name, "").strip()
            if url:
                if not url.startswith(("https://", "http://")):
                    raise EndpointError(f"{name}={url!r} is not an http(s):// URL")
                return url.rstrip("/")
    if not region:
        return GLOBAL_ENDPOINT
    if not all(c.isalnum() or c == "-" for c in region):
        raise EndpointError(f"region {region!r} is not a region name")
    suffix, dual_suffix = next(
        (dns, dual) for prefix, dns, dual in _PARTITIONS if region.startswith(prefix)
    )
    fips = _true(env, "AWS_USE_FIPS_ENDPOINT")
    dual = _true(env, "AWS_USE_DUALSTACK_ENDPOINT")
    # GovCloud's regional STS endpoints are already FIPS endpoints.
    service = "sts-fips" if fips and not (region.startswith("us-gov-") and not dual) else "sts"
    return f"https://{service}.{region}.{dual_suffix if dual else suffix}"


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL, without urllib's import cost."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise EndpointError(f"{url!r} is not an http(s):// URL")
    hostport, slash, path = rest.partition("/")
    hostport = hostport.rpartition("@")[2]  # userinfo is not part of the address
    if hostport.startswith("["):  # [IPv6]:port
        host, _, port_text = hostport[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise EndpointError(f"{url!r} names no host")
    if port_text and not (port_text.isascii() and port_text.isdigit()):
        raise EndpointError(f"{url!r} has an invalid port")
    port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    return scheme, host, port, "/" + path if slash else "/"


def _env_either(env: Mapping[str, str], name: str) -> str:
    return (env.get(name.lower()) or env.get(name.upper()) or "").strip()


def bypasses_proxy(host: str, no_proxy: str) -> bool:
    """`NO_PROXY` semantics: `*`, an exact host, or a domain suffix (`.example.com` or `example.com`)."""
    host = host.lower().rstrip(".")
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if entry.startswith("[") and "]" in entry:  # [::1]:443
            entry = entry[1 : entry.index("]")]
        elif entry.count(":") == 1:  # host:port; a bare IPv6 address has more colons
            entry = entry.split(":", 1)[0]
        entry = entry.lstrip(".").rstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def proxy_for(env: Mapping[str, str], scheme: str, host: str) -> str | None:
    """The proxy URL to reach `host` over `scheme`, or None to connect directly."""
    proxy = _env_either(env, f"{scheme}_proxy")
    if not proxy or bypasses_proxy(host, _env_either(env, "no_proxy")):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def ca_bundle(env: Mapping[str, str]) -> str | None:
    """The `AWS_CA_BUNDLE` file, or None for the system's trust store."""
    return env.get("AWS_CA_BUNDLE", "").strip() or None
