"""u32 selectors as the kernel stores them: (value, mask, offset) of 32-bit aligned words.

The planner writes selectors the way tc takes them (`ip dport 80 0xffff`); the kernel keeps
aligned words. Comparing in the kernel's form lets a read-back filter be matched against the
plan exactly, whatever spelling created it.
"""

from __future__ import annotations

from vmqos.core.errors import InvalidValue

# Byte offset and width of each field tc knows by name (iproute2 f_u32.c, no IP options assumed).
_FIELDS: dict[tuple[str, str], tuple[int, int]] = {
    ("ip", "protocol"): (9, 1), ("ip", "tos"): (1, 1), ("ip", "sport"): (20, 2), ("ip", "dport"): (22, 2),
    ("ip6", "protocol"): (6, 1), ("ip6", "sport"): (40, 2), ("ip6", "dport"): (42, 2),
}
_WIDTHS = {"u8": 1, "u16": 2, "u32": 4}

Key = tuple[int, int, int]  # (value, mask, offset), value and mask in network byte order as integers


def _key(offset: int, width: int, value: int, mask: int) -> Key:
    shift = 8 * (4 - width - offset % 4)
    mask &= (1 << 8 * width) - 1
    return ((value & mask) << shift, mask << shift, offset - offset % 4)


def selector_key(selector: str) -> Key:
    """One tc selector (`ip dport 80 0xffff`, `u16 0x0680 0x0fc0 at 0`, `u32 0 0`) as a key."""
    words = selector.split()
    try:
        if words[0] in _WIDTHS:
            offset = int(words[4], 0) if len(words) == 5 and words[3] == "at" else 0
            return _key(offset, _WIDTHS[words[0]], int(words[1], 0), int(words[2], 0))
        offset, width = _FIELDS[(words[0], words[1])]
        return _key(offset, width, int(words[2], 0), int(words[3], 0))
    except (KeyError, IndexError, ValueError):
        raise InvalidValue("u32 selector", selector, "use `ip|ip6 protocol|tos|sport|dport VALUE MASK` "
                           "or `u8|u16|u32 VALUE MASK [at OFFSET]`") from None


def selector_keys(selectors: tuple[str, ...]) -> tuple[Key, ...]:
    """All keys of a filter, merged per word as tc does and sorted, so equal filters compare equal."""
    words: dict[int, tuple[int, int]] = {}
    for selector in selectors:
        value, mask, offset = selector_key(selector)
        old_value, old_mask = words.get(offset, (0, 0))
        words[offset] = (old_value | value, old_mask | mask)
    return tuple(sorted((v, m, o) for o, (v, m) in words.items()))


def key_selector(key: Key) -> str:
    """A key as a selector that tc accepts and `selector_key` reads back unchanged."""
    value, mask, offset = key
    return f"u32 {value:#010x} {mask:#010x} at {offset}"
