"""The one exception family of ltxserve's outbound HTTP.

Every failure of a guarded request (a refused URL, a blocked address, DNS, timeouts, size and
content-type limits, bad answers) is a :class:`FetchError`. It derives from ``ValueError``
because, for an image URL, the failure is the client's input being unusable: the service layer
turns it into an ``invalid<Param>`` error and shows ``str(exc)`` to the client, so every message
here says what was wrong in words a client can act on and never leaks a stack trace.
"""

from __future__ import annotations


class FetchError(ValueError):
    """An outbound request was refused or failed; ``str(exc)`` is a client-readable reason."""

    def __init__(self, reason: str, *, url: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.url = url


class InvalidUrl(FetchError):
    """The URL is malformed or uses something we never follow (scheme, userinfo, bad port)."""


class BlockedAddress(FetchError):
    """The destination is (or resolves to) an address outbound requests may not reach."""


class DnsError(FetchError):
    """The host name could not be resolved (or resolving took too long)."""


class ConnectFailed(FetchError):
    """No connection could be made, or it broke while talking."""


class TlsError(FetchError):
    """TLS handshake failed: most often the certificate is not valid for the host name."""


class FetchTimeout(FetchError):
    """A connect/read/write step or the whole request took longer than allowed."""


class ResponseTooLarge(FetchError):
    """The body is (or declares itself) larger than the byte cap."""


class WrongContentType(FetchError):
    """The body's Content-Type is not one the caller accepts."""


class RedirectRefused(FetchError):
    """A redirect we do not follow (https -> http downgrade, no Location)."""


class TooManyRedirects(RedirectRefused):
    """More redirects than allowed."""


class BadStatus(FetchError):
    """The server answered with a status we do not treat as success.

    ``status`` lets delivery code tell retryable answers (5xx, 408, 429) from final ones, and
    ``body`` holds the first bytes of the answer for logs (never shown to other clients).
    """

    def __init__(self, reason: str, *, status: int, body: bytes = b"", url: str | None = None) -> None:
        super().__init__(reason, url=url)
        self.status = status
        self.body = body


class BadResponse(FetchError):
    """The server's answer is not valid HTTP or uses something we refuse (e.g. a compressed body)."""
