"""The API's use of oVirt's search language: the one parser (``projections.search``) and
its in-memory back end, with a malformed or refused search answered as a 400 fault.

``compile_search(text, case_sensitive)`` gives an ``InMemorySearch``: ``matches(lookup)``
asks ``lookup(key)`` for the object's values of a key, ``order``/``page_of`` apply the
search's ``sortby`` and ``page``. A search or sort on a credential field
(``domain.base.is_credential_field``) is a 400 fault naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from api.faults import bad_request
from projections.search import InMemorySearch, SearchError, parse


def compile_search(
    text: str | None,
    case_sensitive: bool = False,
    convert: Mapping[str, Callable[[str], str]] | None = None,
) -> InMemorySearch:
    """The search, parsed; an oVirt 400 fault if it is malformed or refused. ``convert``
    as ``InMemorySearch`` takes it."""
    try:
        return InMemorySearch(parse(text), case_sensitive, convert)
    except SearchError as e:
        raise bad_request(str(e), e.field) from None
