"""oVirt's search language (``?search=``): one parser, two back ends.

- ``syntax``: the tokenizer, parser and syntax tree; ``parse(text)`` checks a search
  (including the refusal of credential fields) for every back end.
- ``memory``: ``InMemorySearch`` filters, orders and pages Python objects (the API).
- ``sql``: ``search_objects``/``search_rows`` compile it to SQL over the engine view
  (the read side).

tests/integration/test_search_conformance.py runs the same queries through both back ends
over the same objects and compares what they select.
"""

from projections.search.memory import InMemorySearch
from projections.search.sql import search_objects, search_rows
from projections.search.syntax import And, Cond, Or, Query, SearchError, parse

__all__ = [
    "And",
    "Cond",
    "InMemorySearch",
    "Or",
    "Query",
    "SearchError",
    "parse",
    "search_objects",
    "search_rows",
]
