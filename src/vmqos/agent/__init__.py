"""`vmqos agent`: one per host, as root. It follows the host's desired state on the server, enforces
it on the kernel from an instance's first packet, keeps enforcing it when the server is gone, and
reports back (docs/fleet-protocol.md).

`feed`: the protocol it talks to the server through; `watch`: following the server, with its
backoff; `daemon`: the threads (enforcer, link and libvirt events, reports) and how they stop;
`reports`: what is said back each second; `inventory`: what the host holds.
"""
