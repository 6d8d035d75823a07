"""A Neutron list request read as Neutron reads it: filters, `fields=`, sorting and pagination.

The rules are those of neutron/api/api_common.py and neutron/api/v2/base.py `_items`:
- filter-validation: a query parameter that is not a filter of the resource (nor one of fields,
  sort_key, sort_dir, limit, marker, page_reverse) is a 400 naming it; a filter value is converted
  as the attribute's `convert_to` does (a bad boolean is InvalidInput); empty values are dropped;
  one filter given twice matches either value.
- standard-attr-tag: `tags` (all of), `tags-any`, `not-tags` (not all of), `not-tags-any` (none
  of), each a list that may also be comma-separated (neutron/objects/tag.py).
- sorting: `sort_key`/`sort_dir` in pairs over the resource's sort keys; the plugins here sort and
  page natively, so the primary key is always the last sort key (PaginationNativeHelper).
- pagination: `limit` (0: none), `marker` (the last id seen; one that is not found starts from the
  beginning, as the native pager does), `page_reverse`; the links are Neutron's: `next` unless a
  forward page came back short, `previous` unless a reverse page did.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

from vmqos.services.neutron_input import NeutronError, bad_request

# Query parameters that are never filters (base.py _items' skips).
NOT_FILTERS = ("fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse")
TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")
Convert = Callable[[str], Any]


def as_is(value: str) -> Any:
    return value


def as_integer(value: str) -> int | None:
    """An integer attribute without convert_to (revision_number, mtu): Neutron compares it in SQL, where
    '7' matches 7 and a word matches nothing."""
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class Listing:
    """What a resource lets a list filter and sort on (its attribute map's is_filter / is_sort_key)."""

    filters: dict[str, Convert]
    sort_keys: tuple[str, ...] = ()
    tags: bool = False
    key: str = "id"


@dataclass(frozen=True)
class Query:
    filters: dict[str, list[Any]]
    tags: dict[str, list[str]]
    fields: tuple[str, ...]
    sorts: tuple[tuple[str, bool], ...]
    limit: int
    marker: str | None
    page_reverse: bool


@dataclass(frozen=True)
class Page:
    """The items to answer (fields applied) and the links, as (rel, query parameters) pairs."""

    items: list[dict[str, Any]]
    links: list[tuple[str, list[tuple[str, str]]]]


def _limit(params: list[tuple[str, str]]) -> int:
    raw = next((v for k, v in params if k == "limit"), "0")
    try:
        limit = int(raw)
        if limit >= 0:
            return limit
    except ValueError:
        pass
    raise NeutronError(400, "BadRequest",
                       f"Bad limit request: Limit must be an integer 0 or greater and not '{raw}'.")


def read_query(params: list[tuple[str, str]], listing: Listing) -> Query:
    """The query string's filters, fields, sorts and page, or Neutron's 400."""
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        grouped.setdefault(key, []).append(value)
    invalid = [k for k in grouped if k not in NOT_FILTERS and k not in listing.filters
               and not (listing.tags and k in TAG_FILTERS)]
    if invalid:
        raise bad_request(f"{invalid} is invalid attribute for filtering")
    filters: dict[str, list[Any]] = {}
    tags: dict[str, list[str]] = {}
    for key, values in grouped.items():
        values = [v for v in values if v]
        if key in NOT_FILTERS or not values:
            continue
        if key in TAG_FILTERS:
            tags[key] = [t for v in values for t in v.split(",") if t]
        else:
            filters[key] = [listing.filters[key](v) for v in values]
    sort_keys = [v for v in grouped.get("sort_key", []) if v]
    sort_dirs = [v for v in grouped.get("sort_dir", []) if v]
    if len(sort_keys) != len(sort_dirs):
        raise bad_request("The number of sort_keys and sort_dirs must be same")
    absent = [k for k in sort_keys if k not in listing.sort_keys]
    if absent:
        raise bad_request(f"{absent} is invalid attribute for sort_keys")
    bad_dirs = [d for d in sort_dirs if d not in ("asc", "desc")]
    if bad_dirs:
        raise bad_request(f"{bad_dirs} is invalid value for sort_dirs, valid value is 'asc' and 'desc'")
    sorts = [(k, d == "asc") for k, d in zip(sort_keys, sort_dirs)]
    if listing.key not in dict(sorts):
        sorts.append((listing.key, True))
    limit = _limit(params)
    marker = next((v for k, v in params if k == "marker"), None) or None
    reverse = next((v for k, v in params if k == "page_reverse"), "False").lower() == "true"
    return Query(filters, tags, tuple(v for v in grouped.get("fields", []) if v), tuple(sorts), limit, marker,
                 reverse)


def _matches(view: dict[str, Any], query: Query) -> bool:
    for field, wanted in query.filters.items():
        if field == "fixed_ips":  # `fixed_ips=ip_address=10.0.0.5`: one of the port's addresses is that
            if not {f"{k}={v}" for ip in view.get(field) or () for k, v in ip.items()} & set(wanted):
                return False
        elif view.get(field) not in wanted:
            return False
    have = set(view.get("tags", ()))
    if "tags" in query.tags and not set(query.tags["tags"]) <= have:
        return False
    if "tags-any" in query.tags and not set(query.tags["tags-any"]) & have:
        return False
    if "not-tags" in query.tags and set(query.tags["not-tags"]) <= have:
        return False
    return not ("not-tags-any" in query.tags and set(query.tags["not-tags-any"]) & have)


def _compare(sorts: tuple[tuple[str, bool], ...], one: dict[str, Any], other: dict[str, Any]) -> int:
    """SortingEmulatedHelper's order: None first, then each key ascending or descending."""
    for key, ascending in sorts:
        a, b = one.get(key), other.get(key)
        if a is None or b is None:
            result = (a is not None) - (b is not None)
        else:
            result = (a > b) - (a < b)
        if result:
            return result if ascending else -result
    return 0


def select(views: list[dict[str, Any]], query: Query, key: str = "id",
           shown: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Page:
    """The page of `views` (the objects the caller sees) that the query asks for.

    Filters, sorts and the marker apply to `views` as given; `shown`, if any, is what the caller is shown
    of each (a port's binding attributes are an admin's): Neutron filters in its query, on every column,
    and strips what the caller may not see only from the answer."""
    matched = [v for v in views if _matches(v, query)]
    sorts = query.sorts if not query.page_reverse or not query.limit else \
        tuple((k, not asc) for k, asc in query.sorts)
    order = functools.partial(_compare, sorts)
    matched.sort(key=functools.cmp_to_key(order))
    links: list[tuple[str, list[tuple[str, str]]]] = []
    if query.limit:
        mark = next((v for v in views if v.get(key) == query.marker), None) if query.marker else None
        if mark is not None:
            matched = [v for v in matched if order(v, mark) > 0]
        matched = matched[:query.limit]
        if query.page_reverse:
            matched.reverse()
        links = _links(matched, query, key)
    fields = query.fields
    answer = [shown(view) for view in matched] if shown else matched
    return Page([{k: v for k, v in view.items() if k in fields} if fields else view for view in answer], links)


def _links(items: list[dict[str, Any]], query: Query, key: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """api_common.get_pagination_links; the caller adds the request's own parameters (see `link_params`)."""
    links: list[tuple[str, list[tuple[str, str]]]] = []
    if not (len(items) < query.limit and not query.page_reverse):
        links.append(("next", [("marker", str(items[-1][key]))] if items else []))
    if not (len(items) < query.limit and query.page_reverse):
        links.append(("previous", ([("marker", str(items[0][key]))] if items else []) + [("page_reverse", "True")]))
    return links


def link_params(params: list[tuple[str, str]], rel: str, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """get_next_link / get_previous_link: the request's parameters less marker (and page_reverse for
    next), then the new marker (and page_reverse=True for previous)."""
    drop = ("marker", "page_reverse")
    return [(k, v) for k, v in params if k not in drop] + extra


__all__ = ["Listing", "Page", "Query", "as_integer", "as_is", "link_params", "read_query", "select"]
