"""Identity preparation against the normalization rules partners publish (Meta customer lists)."""

from __future__ import annotations

import hashlib

import pytest

from partners.identity import InvalidIdentityError, normalize, prepare, prepare_all
from schemas.records import Identity, IdentityType

I = IdentityType
HASHED = frozenset({I.EMAIL, I.MOBILE_NUMBER})


@pytest.mark.parametrize(
    ("identity_type", "raw", "normalized"),
    [
        (I.EMAIL, "  John_Smith@Gmail.com ", "john_smith@gmail.com"),
        (I.EMAIL, "ALICE@EXAMPLE.CO.UK", "alice@example.co.uk"),
        (I.MOBILE_NUMBER, "+1 (650) 555-1212", "16505551212"),
        (I.MOBILE_NUMBER, "1-650-555-1212", "16505551212"),
        (I.MOBILE_NUMBER, "+44 (0)20 7946 0958", "442079460958"),
        (I.MOBILE_NUMBER, "0044 20 7946 0958", "442079460958"),
        (I.PHONE_NUMBER_2, "+33 6 12 34 56 78", "33612345678"),
        (
            I.IOS_IDFA,
            " 6D92078A-8246-4BA4-AE5B-76104861E7DC ",
            "6d92078a-8246-4ba4-ae5b-76104861e7dc",
        ),
        (
            I.ANDROID_AAID,
            "38400000-8CF0-11BD-B23E-10B96E40000D",
            "38400000-8cf0-11bd-b23e-10b96e40000d",
        ),
        (I.CUSTOMER_ID, " Cust-42 ", "Cust-42"),
    ],
)
def test_normalize(identity_type: IdentityType, raw: str, normalized: str) -> None:
    assert normalize(identity_type, raw) == normalized


@pytest.mark.parametrize(
    ("identity_type", "raw"),
    [
        (I.EMAIL, "not-an-email"),
        (I.EMAIL, "a b@example.com"),
        (I.MOBILE_NUMBER, "12345"),  # too short to carry a country code
        (I.MOBILE_NUMBER, "+1 650 555 1212 1234 5"),  # longer than E.164's 15 digits
        (I.CUSTOMER_ID, "   "),
    ],
)
def test_invalid_values_are_refused_without_quoting_them(
    identity_type: IdentityType, raw: str
) -> None:
    with pytest.raises(InvalidIdentityError) as error:
        normalize(identity_type, raw)
    assert not raw.strip() or raw.strip() not in str(error.value)


def test_email_and_phone_are_sha256_of_the_normalized_value() -> None:
    email = prepare(Identity(type=I.EMAIL, value=" John_Smith@Gmail.com"), HASHED)
    phone = prepare(Identity(type=I.MOBILE_NUMBER, value="+1 (650) 555-1212"), HASHED)
    assert email == Identity(
        type=I.EMAIL,
        value="62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
        encoding="sha256",
    )
    assert phone.value == hashlib.sha256(b"16505551212").hexdigest()
    assert phone.encoding == "sha256"


def test_mobile_ad_ids_are_lower_cased_and_never_hashed() -> None:
    idfa = prepare(Identity(type=I.IOS_IDFA, value="6D92078A-8246-4BA4-AE5B-76104861E7DC"), HASHED)
    assert idfa == Identity(type=I.IOS_IDFA, value="6d92078a-8246-4ba4-ae5b-76104861e7dc")


def test_values_already_sha256_are_not_hashed_twice() -> None:
    digest = hashlib.sha256(b"someone@example.com").hexdigest()
    by_shape = prepare(Identity(type=I.EMAIL, value=digest.upper()), HASHED)
    by_encoding = prepare(Identity(type=I.EMAIL, value=digest, encoding="sha256"), HASHED)
    assert by_shape == by_encoding == Identity(type=I.EMAIL, value=digest, encoding="sha256")


def test_partners_without_hashing_get_normalized_raw_values() -> None:
    email = prepare(Identity(type=I.EMAIL, value=" Bob@Example.com "), frozenset())
    assert email == Identity(type=I.EMAIL, value="bob@example.com")


def test_prepare_all_keeps_the_good_and_names_the_bad() -> None:
    prepared, problems = prepare_all(
        [Identity(type=I.EMAIL, value="nope"), Identity(type=I.EMAIL, value="ok@example.com")],
        HASHED,
    )
    assert [identity.value for identity in prepared] == [
        hashlib.sha256(b"ok@example.com").hexdigest()
    ]
    assert problems == ["email: not an email address"]
