"""IP addresses and ``ip/bits`` networks, read as Dovecot's ``net_parse_range`` reads them.

IPv4 is a dotted quad of decimal numbers below 256 (leading zeros allowed, as in Dovecot's
fast path). IPv6 goes through the stdlib ``ipaddress``, optionally in ``[...]`` and with a
``%scope``. Dovecot hands other IPv4 spellings to the C library, which on glibc also takes
``127.1`` or hex parts; we do not, so such values stay strings on every platform.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

_DOTTED_QUAD = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)")
_DECIMAL = re.compile(r"[0-9]+")
_IPV4_MAPPED_PREFIX = 0xFFFF  # ::ffff:a.b.c.d, once the low 32 bits are shifted out


@dataclass(frozen=True, slots=True)
class Address:
    """One IPv4 or IPv6 address as an integer; ``scope`` is the IPv6 ``%zone`` or ``""``."""

    version: int
    value: int
    scope: str = ""

    @property
    def max_bits(self) -> int:
        return 32 if self.version == 4 else 128

    def __str__(self) -> str:
        """Dotted quad, or IPv6 as ``inet_ntop`` writes it (``::ffff:1.2.3.4`` included)."""
        if self.version == 4:
            return ".".join(str((self.value >> shift) & 0xFF) for shift in (24, 16, 8, 0))
        if self.value >> 32 == _IPV4_MAPPED_PREFIX:
            text = f"::ffff:{Address(4, self.value & 0xFFFF_FFFF)}"
        else:
            text = str(ipaddress.IPv6Address(self.value))
        return f"{text}%{self.scope}" if self.scope else text


@dataclass(frozen=True, slots=True)
class Network:
    """``address/bits``; a plain address is a network of all its bits."""

    address: Address
    bits: int

    def contains(self, ip: Address) -> bool:
        """``net_is_in_network``: an IPv4-mapped IPv6 ``ip`` counts as IPv4; a scope on
        the network must equal the address's, a missing one matches any."""
        if ip.version == 6 and ip.value >> 32 == _IPV4_MAPPED_PREFIX:
            ip = Address(4, ip.value & 0xFFFF_FFFF)
        net = self.address
        if ip.version != net.version or (net.scope and ip.scope != net.scope):
            return False
        shift = net.max_bits - self.bits
        return ip.value >> shift == net.value >> shift

    def __str__(self) -> str:
        if self.bits == self.address.max_bits:
            return str(self.address)
        return f"{self.address}/{self.bits}"


def parse_network(text: str) -> Network | None:
    """``ip`` or ``ip/bits`` (bits at most the address size), else None."""
    address_text, slash, bits_text = text.partition("/")
    address = parse_address(address_text)
    if address is None:
        return None
    if not slash:
        return Network(address, address.max_bits)
    bits = _small_decimal(bits_text)
    if bits is None or bits > address.max_bits:
        return None
    return Network(address, bits)


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> Address | None:
    """The address ``text`` spells, else None. Cached: field values repeat a lot."""
    quad = _DOTTED_QUAD.fullmatch(text)
    if quad is not None:
        value = 0
        for part in quad.groups():
            octet = _small_decimal(part)
            if octet is None or octet > 255:
                return None
            value = value << 8 | octet
        return Address(4, value)
    if ":" not in text:
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ipv6 = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return Address(6, int(ipv6), ipv6.scope_id or "")


def _small_decimal(text: str) -> int | None:
    """ASCII decimal digits as an int, None if not digits or absurdly long (> 9 digits)."""
    if _DECIMAL.fullmatch(text) is None:
        return None
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) <= 9 else None
