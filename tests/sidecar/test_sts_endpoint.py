"""Where STS is and how to reach it, resolved from the environment as the AWS SDKs do."""

from __future__ import annotations

import pytest

from sidecred.sidecar.sts_endpoint import (
    EndpointError,
    bypasses_proxy,
    ca_bundle,
    proxy_for,
    resolve_region,
    split_url,
    sts_endpoint,
)


@pytest.mark.parametrize(
    ("env", "region", "expected"),
    [
        ({}, "us-east-1", "https://sts.us-east-1.amazonaws.com"),
        ({}, "eu-west-1", "https://sts.eu-west-1.amazonaws.com"),
        ({}, "cn-north-1", "https://sts.cn-north-1.amazonaws.com.cn"),
        ({}, "cn-northwest-1", "https://sts.cn-northwest-1.amazonaws.com.cn"),
        (
            {"AWS_USE_FIPS_ENDPOINT": "true"},
            "us-west-2",
            "https://sts-fips.us-west-2.amazonaws.com",
        ),
        (
            {"AWS_USE_FIPS_ENDPOINT": "TRUE"},
            "us-east-1",
            "https://sts-fips.us-east-1.amazonaws.com",
        ),
        ({"AWS_USE_FIPS_ENDPOINT": "false"}, "us-west-2", "https://sts.us-west-2.amazonaws.com"),
        # GovCloud's regional endpoints are FIPS endpoints already.
        (
            {"AWS_USE_FIPS_ENDPOINT": "true"},
            "us-gov-west-1",
            "https://sts.us-gov-west-1.amazonaws.com",
        ),
        ({"AWS_USE_DUALSTACK_ENDPOINT": "true"}, "eu-west-1", "https://sts.eu-west-1.api.aws"),
        ({}, None, "https://sts.amazonaws.com"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000/"}, "us-east-1", "http://127.0.0.1:5000"),
        (
            {
                "AWS_ENDPOINT_URL": "https://all.example",
                "AWS_ENDPOINT_URL_STS": "https://sts.example",
            },
            "us-east-1",
            "https://sts.example",
        ),
        (
            {
                "AWS_ENDPOINT_URL_STS": "https://sts.example",
                "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
            },
            "eu-west-1",
            "https://sts.eu-west-1.amazonaws.com",
        ),
    ],
)
def test_endpoint(env, region, expected):
    assert sts_endpoint(env, region) == expected


@pytest.mark.parametrize(
    ("env", "region", "words"),
    [
        (
            {"AWS_ENDPOINT_URL_STS": "sts.example.com"},
            None,
            "AWS_ENDPOINT_URL_STS='sts.example.com'",
        ),
        ({}, "us-east-1/../evil", "not a region name"),
    ],
)
def test_unusable_settings_are_named(env, region, words):
    with pytest.raises(EndpointError) as err:
        sts_endpoint(env, region)
    assert words in str(err.value)


def test_region_comes_from_the_sidecar_then_the_sdk_variables():
    assert resolve_region({"AWS_REGION": "eu-west-1"}, "us-east-2") == "us-east-2"
    assert (
        resolve_region({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "x"}, None) == "eu-west-1"
    )
    assert resolve_region({"AWS_DEFAULT_REGION": "ap-south-1"}, "") == "ap-south-1"
    assert resolve_region({}, None) is None


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("https://sts.amazonaws.com", ("https", "sts.amazonaws.com", 443, "/")),
        ("http://127.0.0.1:5000/x/", ("http", "127.0.0.1", 5000, "/x/")),
        ("http://user:pw@proxy:3128", ("http", "proxy", 3128, "/")),
        ("https://[::1]:8443/", ("https", "::1", 8443, "/")),
    ],
)
def test_split_url(url, parts):
    assert split_url(url) == parts


@pytest.mark.parametrize("url", ["ftp://x", "https://", "https://host:port/", "sts.amazonaws.com"])
def test_split_url_refuses(url):
    with pytest.raises(EndpointError):
        split_url(url)


STS_HOST = "sts.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("no_proxy", "bypass"),
    [
        ("*", True),
        ("amazonaws.com", True),
        (".amazonaws.com", True),
        (f"example.com, {STS_HOST}", True),
        (f"{STS_HOST}:443", True),
        ("zonaws.com", False),
        ("", False),
    ],
)
def test_no_proxy(no_proxy, bypass):
    assert bypasses_proxy(STS_HOST, no_proxy) is bypass


def test_no_proxy_matches_an_ipv6_host_by_its_bracketed_entry():
    assert bypasses_proxy("::1", "[::1]:443") is True


def test_proxy_choice_by_scheme_case_and_no_proxy():
    env = {
        "HTTPS_PROXY": "proxy:3128",
        "https_proxy": "http://lower:3128",
        "HTTP_PROXY": "http://p:80",
    }
    assert proxy_for(env, "https", "sts.example") == "http://lower:3128"  # lower-case wins
    assert proxy_for({"HTTPS_PROXY": "proxy:3128"}, "https", "x") == "http://proxy:3128"
    assert proxy_for(env, "http", "x") == "http://p:80"
    assert proxy_for({**env, "NO_PROXY": "sts.example"}, "https", "sts.example") is None
    assert proxy_for({}, "https", "x") is None


def test_ca_bundle():
    assert ca_bundle({"AWS_CA_BUNDLE": " /etc/ca.pem "}) == "/etc/ca.pem"
    assert ca_bundle({}) is None
