"""An in-memory fake kernel for tests without root: links, tc, nftables, in the spirit of pyroute2's
ipmock and httpx's MockTransport.

    kernel = FakeKernel(["tap0", "tap1"])
    tc, nft, batch = fake_drivers(kernel)
    rec = Reconciler(tc=tc, nft=nft, batch=batch)

`kernel.journal` lists every call in order, `kernel.fail(pattern)` makes commands fail,
`kernel.plant(obj)` puts drift in place. It imports only the core and the drivers' pure parts
(the protocols and nft's JSON builder); nothing here starts a process or opens a socket.
"""

from __future__ import annotations

from vmqos.drivers.fake.kernel import Call, Device, Failure, FakeKernel
from vmqos.drivers.fake.nft import FakeNft
from vmqos.drivers.fake.tc import FakeBatch, FakeTc
from vmqos.drivers.protocols import BatchRunner, NftDriver, TcDriver

__all__ = ["Call", "Device", "Failure", "FakeBatch", "FakeKernel", "FakeNft", "FakeTc", "fake_drivers"]


def fake_drivers(kernel: FakeKernel, netns: str | None = None) -> tuple[TcDriver, NftDriver, BatchRunner]:
    """The three drivers a Reconciler takes, over one fake kernel (typed as the protocols: mypy
    checks here that the fakes satisfy them)."""
    return FakeTc(kernel, netns), FakeNft(kernel), FakeBatch(kernel)
