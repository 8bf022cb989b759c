"""Properties of the parsers every dashboard request goes through (hypothesis): the token
redirect's Location is always a path on this host, numeric parameters are a bounded int or a
ValueError naming them, and query-token parsing takes any bytes."""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=500, deadline=None)
@given(st.text(), st.text(alphabet="abc=&%", max_size=20))
def test_token_redirect_location_is_always_a_path_on_this_host(path, query):
    from dashboards.app import _local_location

    location = _local_location("/" + path, query).decode("ascii")
    assert location.startswith("/") and not location.startswith(("//", "/\\"))
    assert all(" " < c < "\x7f" and c != "\\" for c in location)
    assert urlsplit(urljoin("http://127.0.0.1:8080/a/b", location)).netloc == "127.0.0.1:8080"


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=30), st.integers().map(str)))
def test_int_param_answers_a_bounded_int_or_a_value_error(text):
    from dashboards.app import MAX_INT, int_param

    try:
        value = int_param(text, "offset", 7)
    except ValueError as exc:
        assert str(exc).startswith("offset must be an integer in [0, 2147483647]")
    else:
        assert 0 <= value <= MAX_INT and (text is not None or value == 7)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_query_token_parsing_never_raises(raw):
    from dashboards.app import _token_from_query

    token, rest = _token_from_query(b"token=" + raw + b"&a=1")
    assert isinstance(token, bytes) and rest.isascii()
