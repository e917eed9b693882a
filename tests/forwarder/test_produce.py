from __future__ import annotations

import pytest

from forwarder.produce import ProduceError, keyed


def test_records_are_keyed_by_their_mpid_as_text() -> None:
    lines = ['{"mpid": 42, "audience_id": "a"}\n', "\n", '{"mpid": "u-1"}\n']
    assert keyed(lines) == [
        (b"42", b'{"mpid": 42, "audience_id": "a"}'),
        (b"u-1", b'{"mpid": "u-1"}'),
    ]


@pytest.mark.parametrize("bad", ["{not json", '["u-1"]', '{"audience_id": "a"}', '{"mpid": ""}'])
def test_a_line_without_an_mpid_stops_before_anything_is_sent(bad: str) -> None:
    with pytest.raises(
        ProduceError, match=r"^forwarder produce: line 2: expected a JSON object with an mpid$"
    ):
        keyed(['{"mpid": "u-1"}', bad])
