"""Outbound HTTP for ltxserve: every request to a client-supplied URL goes through here.

``guard`` decides which URLs and addresses may be reached (SSRF policy); ``client`` makes the
request to exactly the checked address with bounded time and size. Use :func:`from_settings`
to get the process's :class:`SafeHttpClient`; catch :class:`FetchError` (a ``ValueError``)
for every failure.
"""

from ltxserve.net.client import FetchResult, HttpResponse, PinnedTransport, SafeHttpClient, from_settings
from ltxserve.net.errors import (
    BadResponse,
    BadStatus,
    BlockedAddress,
    ConnectFailed,
    DnsError,
    FetchError,
    FetchTimeout,
    InvalidUrl,
    RedirectRefused,
    ResponseTooLarge,
    TlsError,
    TooManyRedirects,
    WrongContentType,
)
from ltxserve.net.guard import ParsedUrl, check_ip, check_url, parse_networks, parse_url, resolve

__all__ = [
    "BadResponse",
    "BadStatus",
    "BlockedAddress",
    "ConnectFailed",
    "DnsError",
    "FetchError",
    "FetchResult",
    "FetchTimeout",
    "HttpResponse",
    "InvalidUrl",
    "ParsedUrl",
    "PinnedTransport",
    "RedirectRefused",
    "ResponseTooLarge",
    "SafeHttpClient",
    "TlsError",
    "TooManyRedirects",
    "WrongContentType",
    "check_ip",
    "check_url",
    "from_settings",
    "parse_networks",
    "parse_url",
    "resolve",
]
