"""Trust (issue 13 item 4): objects of vmqos's naming that belong to no known port (pure half)."""

from __future__ import annotations

from vmqos.core.plan.names import chain_from, chain_to, ifb_name
from vmqos.core.plan.orphans import Inventory, find_orphans


def _inv(**kw) -> Inventory:
    return Inventory(**{k: frozenset(v) for k, v in kw.items()})


def test_a_device_with_vmqos_objects_that_is_no_known_port_is_an_orphan_port():
    found = _inv(links={"tap-a", "tap-b", "tap-c", "eth9", ifb_name("tap-a"), ifb_name("tap-b")},
                 ifbs={ifb_name("tap-a"), ifb_name("tap-b")}, htb_roots={"tap-c"},
                 chains={chain_to("tap-a"), chain_from("tap-b")},
                 counters={chain_to("tap-a") + "_offered", chain_from("tap-b") + "_passed"})
    orphans = find_orphans(found, known={"tap-a"})
    assert orphans.ports == ("tap-b", "tap-c")  # eth9 holds nothing of vmqos's
    assert not orphans.loose()


def test_objects_of_no_device_are_loose_and_named():
    gone = "tap-gone"
    found = _inv(links={"tap-a", ifb_name(gone)}, ifbs={ifb_name(gone)}, chains={chain_to(gone)},
                 counters={chain_to(gone) + "_offered"})
    orphans = find_orphans(found, known={"tap-a"})
    assert orphans.ports == ()
    assert orphans.ifbs == (ifb_name(gone),) and orphans.chains == (chain_to(gone),)
    assert orphans.counters == (chain_to(gone) + "_offered",)
    texts = [text for _, text in orphans.loose()]
    assert all("\n" not in t and "apply --prune" in t for t in texts) and len(texts) == 3


def test_a_known_port_whose_device_is_gone_keeps_its_objects():
    gone = "tap-gone"  # desired or applied: `check` diffs it as a port, nothing of it is loose
    found = _inv(links={ifb_name(gone)}, ifbs={ifb_name(gone)}, chains={chain_to(gone)})
    assert not find_orphans(found, known={gone})
