"""The bearer-token check the API's writes and exports, and the workers' export, share."""

from __future__ import annotations

import hmac

from pydantic import SecretStr


def bearer_matches(authorization: str, token: SecretStr) -> bool:
    """Whether an Authorization header value is ``Bearer <token>`` (compared in constant time)."""
    scheme, _, given = authorization.partition(" ")
    # Header bytes that are not UTF-8 arrive as lone surrogates: no token, not a 500.
    given_bytes = given.strip().encode("utf-8", "surrogatepass")
    expected = token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(given_bytes, expected)
