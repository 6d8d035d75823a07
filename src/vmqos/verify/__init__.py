"""`vmqos verify`: real traffic through a port, judged against its limits, with plots.

`judge` decides (pure: steady state, tolerance, load, burst, latency), `parse` reads the tools'
output, `run` drives iperf3 and ping and samples the port's limiters, `plot` draws a run.
"""
