"""The API server: Keystone's and Neutron's QoS subset over HTTP, for the real `openstack` client.

An adapter over services only: it never imports a driver or the reconciler (a contract), so it
runs without root; what it stores is enforced on the host by the agent, not by the server.
"""
