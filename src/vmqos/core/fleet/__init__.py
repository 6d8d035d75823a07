"""The values the agent and the server exchange (docs/fleet-protocol.md), and their JSON (pure).

`desired`: a host's desired rows and pages of them; `inventory`: what an agent found on its host;
`report`: what it says back every second. Each module reads and writes the protocol's JSON shapes,
so that the HTTP client and the tests' fake feed share one serialisation.
"""
