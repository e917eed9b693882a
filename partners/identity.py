"""Identity preparation: the normalization rules partners publish, and SHA-256 where required.

The rules follow Meta's customer-list guide (and the same rules Google, TikTok and Snap publish):
email trimmed and lower-cased; phone numbers as E.164 digits (country code, no '+', no leading
zeros, no symbols); mobile advertising ids lower-cased and never hashed. A value that already is
SHA-256 hex is passed on lower-cased rather than hashed twice.
"""

from __future__ import annotations

import hashlib
import re

from schemas.records import Identity, IdentityType

I = IdentityType

PHONE_TYPES = frozenset({I.MOBILE_NUMBER, I.PHONE_NUMBER_2, I.PHONE_NUMBER_3})
MOBILE_AD_ID_TYPES = frozenset(
    {I.IOS_IDFA, I.IOS_IDFV, I.ANDROID_AAID, I.ANDROID_UUID, I.ROKU_AID, I.FIRE_AID}
)

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# E.164: at most 15 digits including the country code; 7 is the shortest real number with one.
_E164_DIGITS = re.compile(r"[1-9][0-9]{6,14}")


class InvalidIdentityError(ValueError):
    """A value that cannot be normalized. The message names the type, never the value."""


def is_sha256_hex(value: str) -> bool:
    return _SHA256_HEX.fullmatch(value.strip()) is not None


def normalize(identity_type: IdentityType, value: str) -> str:
    """The value in the form partners match on (before any hashing)."""
    trimmed = value.strip()
    if identity_type == I.EMAIL:
        email = trimmed.lower()
        if _EMAIL.fullmatch(email) is None:
            raise InvalidIdentityError(f"{identity_type}: not an email address")
        return email
    if identity_type in PHONE_TYPES:
        # '+44 (0)20 7946 0958' and '0044 20 7946 0958' both become '442079460958'.
        digits = re.sub(r"\(0\)|\D", "", trimmed).lstrip("0")
        if _E164_DIGITS.fullmatch(digits) is None:
            raise InvalidIdentityError(
                f"{identity_type}: not a phone number with a country code (E.164)"
            )
        return digits
    if identity_type in MOBILE_AD_ID_TYPES:
        return trimmed.lower()
    if not trimmed:
        raise InvalidIdentityError(f"{identity_type}: empty value")
    return trimmed


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def prepare(identity: Identity, hashed_types: frozenset[IdentityType]) -> Identity:
    """Normalize an identity, and hash it when the partner wants that type hashed."""
    if identity.encoding == "sha256" or (
        identity.type in hashed_types and is_sha256_hex(identity.value)
    ):
        return Identity(type=identity.type, value=identity.value.strip().lower(), encoding="sha256")
    value = normalize(identity.type, identity.value)
    if identity.type in hashed_types:
        return Identity(type=identity.type, value=sha256_hex(value), encoding="sha256")
    return Identity(type=identity.type, value=value)


def prepare_all(
    identities: list[Identity], hashed_types: frozenset[IdentityType]
) -> tuple[list[Identity], list[str]]:
    """The identities that could be prepared, and why the others could not."""
    prepared: list[Identity] = []
    problems: list[str] = []
    for identity in identities:
        try:
            prepared.append(prepare(identity, hashed_types))
        except InvalidIdentityError as error:
            problems.append(str(error))
    return prepared, problems
