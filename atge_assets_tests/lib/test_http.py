"""The host allow-list: every spelling of a forbidden address is refused, whatever the patterns,
and the hosts the benchmark does call keep working."""

import ipaddress
import random
import socket

import pytest

from atge_assets.lib.http import (
    HostNotAllowed,
    check_url,
    host_matches,
    non_public,
    parse_host,
)

METADATA_SPELLINGS = [
    "169.254.169.254", "2852039166", "0xa9fea9fe", "0XA9FEA9FE", "0251.0376.0251.0376",
    "0xa9.0xfe.0xa9.0xfe", "169.254.43518", "169.16689662", "0251.0xfe.43518",
    "169.254.169.254.", "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]",
    "[::169.254.169.254]", "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::]", "[fd00:ec2::254]",
    "metadata.google.internal", "METADATA.Google.Internal.", "metadata.goog", "metadata",
    "metadata.", "Metadata..", "instance-data", "instance-data.ec2.internal",
    "\uff11\uff16\uff19\uff0e\uff12\uff15\uff14\uff0e\uff11\uff16\uff19\uff0e\uff12\uff15\uff14",
    "\uff4d\uff45\uff54\uff41\uff44\uff41\uff54\uff41",  # fullwidth: IDNA makes them ASCII
]
OTHER_FORBIDDEN = {
    "169.254.1.1": "link-local", "[fe80::1]": "link-local", "[fe80::1%25eth0]": "link-local",
    "[::ffff:169.254.1.1]": "link-local", "224.0.0.1": "multicast", "[ff02::1]": "multicast",
    "239.1.2.3": "multicast", "0.0.0.0": "unspecified", "0": "unspecified", "[::]": "unspecified",
    "0x0": "unspecified", "[::ffff:0.0.0.0]": "unspecified", "255.255.255.255": "broadcast",
}


@pytest.mark.parametrize("host", METADATA_SPELLINGS)
def test_metadata_is_refused_however_it_is_spelt_even_by_a_wildcard(host):
    for patterns in (["*"], ["*", "*.*", host.strip("[]").lower()], ["169.254.*"]):
        with pytest.raises(HostNotAllowed, match="metadata") as info:
            check_url(f"http://{host}/latest/meta-data/", patterns)
        assert "always refused" in str(info.value)


@pytest.mark.parametrize("host, kind", sorted(OTHER_FORBIDDEN.items()))
def test_link_local_multicast_and_unspecified_are_refused_by_any_pattern(host, kind):
    with pytest.raises(HostNotAllowed, match=kind):
        check_url(f"http://{host}:8080/", ["*"])


def test_the_refusal_names_the_address_a_spelling_reaches():
    with pytest.raises(HostNotAllowed) as info:
        check_url("http://2852039166/", ["*"])
    assert str(info.value) == (
        "host '2852039166' (169.254.169.254) is a cloud metadata address; link-local, metadata, "
        "multicast and unspecified addresses are always refused")


@pytest.mark.parametrize("url, patterns", [
    ("http://127.0.0.1:8787/api/health", ["127.0.0.1"]),
    ("http://localhost:3000/", ["localhost"]),
    ("http://[::1]:3000/", ["::1"]),
    ("https://atge-git-main-acme.vercel.app/api", ["*.vercel.app"]),
    ("https://ATGE-abc.Vercel.App./", ["*.vercel.app"]),
    ("https://example.com/", ["*"]),
    ("http://10.0.0.5/", ["*"]),  # private, but the configuration allowed everything: its call
    ("http://127.1:8787/", ["127.0.0.1"]),  # matched as the address it is
    ("http://2130706433/", ["127.0.0.1"]),
])
def test_ordinary_hosts_and_loopback_keep_working(url, patterns):
    assert check_url(url, patterns) == url


@pytest.mark.parametrize("url, patterns", [
    ("https://evil.example/", ["*.vercel.app"]),
    ("https://vercel.app.evil.example/", ["*.vercel.app"]),
    ("http://127.0.0.2/", ["127.0.0.1"]),
    ("http://0x7f000002/", ["127.0.0.1"]),
])
def test_hosts_outside_the_patterns_are_refused(url, patterns):
    with pytest.raises(HostNotAllowed, match="not in the allowed hosts"):
        check_url(url, patterns)


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1/", "scheme"), ("http:///x", "no host"),
    ("http://user:pw@127.0.0.1/", "credentials"), ("http://a b/", "not a valid host name"),
    ("http://%31%32%37.0.0.1/", "not a valid host name"), ("http://[::ffff:zz]/", "IPv6"),
    ("http://1..2/", "not a valid host name"),
])
def test_malformed_urls_are_refused(url, message):
    with pytest.raises(HostNotAllowed, match=message):
        check_url(url, ["*"])


def _spellings(rng: random.Random, value: int) -> list[str]:
    """Ways to write the 32-bit address `value` in one to four parts, each decimal, hex or octal."""
    def fmt(n: int) -> str:
        return rng.choice([str(n), hex(n), "0" + oct(n)[2:], hex(n).upper().replace("0X", "0x")])

    b = value.to_bytes(4, "big")
    return [fmt(value), f"{fmt(b[0])}.{fmt(int.from_bytes(b[1:], 'big'))}",
            f"{fmt(b[0])}.{fmt(b[1])}.{fmt(int.from_bytes(b[2:], 'big'))}",
            ".".join(fmt(x) for x in b)]


def test_ipv4_spellings_parse_as_the_c_library_resolves_them():
    # socket.inet_aton is libc's: the same reading getaddrinfo gives a numeric host.
    rng = random.Random(7)
    values = [0xA9FEA9FE, 0x7F000001, 0x0A000005, 0] + [rng.getrandbits(32) for _ in range(200)]
    for v in values:
        for s in _spellings(rng, v):
            assert parse_host(s) == (str(ipaddress.IPv4Address(v)), ipaddress.IPv4Address(v)), s
            assert socket.inet_aton(s) == v.to_bytes(4, "big"), s
    for name in ("256.1.1.1", "1.2.3.4.5", "0x100.1", "08", "1.16777216", "abc"):
        assert parse_host(name) == (name, None), name  # a name to the resolver too
        with pytest.raises(OSError):
            socket.inet_aton(name)


def test_non_public_addresses_are_named():
    kinds = {a: non_public(ipaddress.ip_address(a)) for a in (
        "10.0.0.5", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd00::1", "::ffff:10.0.0.5",
        "198.18.0.1", "8.8.8.8", "::ffff:8.8.8.8", "2606:4700::1111", "127.0.0.1", "127.9.9.9",
        "::1", "169.254.169.254")}
    assert kinds == {
        "10.0.0.5": "a private address (RFC 1918)", "172.16.0.1": "a private address (RFC 1918)",
        "192.168.1.1": "a private address (RFC 1918)",
        "100.64.0.1": "a shared carrier-grade NAT address (RFC 6598)",
        "fd00::1": "a unique-local IPv6 address",
        "::ffff:10.0.0.5": "a private address (RFC 1918)",
        "198.18.0.1": "a reserved, non-public address",
        "8.8.8.8": None, "::ffff:8.8.8.8": None, "2606:4700::1111": None,
        "127.0.0.1": None, "127.9.9.9": None, "::1": None,
        "169.254.169.254": "a cloud metadata address"}


def test_host_matches_compares_canonical_forms():
    assert host_matches("0x0a000005", ["10.0.0.5"])
    assert host_matches("::ffff:10.0.0.5", ["10.0.0.*"])
    assert not host_matches("10.0.0.5", ["10.0.0.50"])
    assert host_matches("App.Example.", [" *.example "])
