"""Pydantic models of the API's bodies, for /openapi.json and the clients generated from it.

Requests are read by services.neutron_input with Neutron's own checks and messages, not by these
models (a model would answer a bad value with its own words and a 422); responses are built by the
services and described here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class NeutronErrorBody(BaseModel):
    type: str = Field(description="Neutron's exception name, e.g. QosPolicyNotFound or HTTPBadRequest")
    message: str
    detail: str = ""


class NeutronErrorResponse(BaseModel):
    NeutronError: NeutronErrorBody


class BandwidthLimitRule(BaseModel):
    id: str
    max_kbps: int = Field(ge=0, le=2**31 - 1, description="kbit/s of 1000 bit; 0 is no limit")
    max_burst_kbps: int = Field(0, ge=0, le=2**31 - 1, description="a size, in kilobits of 1000 bit")
    direction: Literal["egress", "ingress"] = "egress"


class PolicyRule(BandwidthLimitRule):
    type: str
    qos_policy_id: str


class QosPolicy(BaseModel):
    id: str
    name: str
    description: str
    shared: bool
    is_default: bool
    project_id: str
    tenant_id: str
    rules: list[PolicyRule]
    tags: list[str]
    revision_number: int
    created_at: str
    updated_at: str


class QosPolicyInput(BaseModel):
    name: str = ""
    description: str = ""
    shared: bool = False
    is_default: bool = False
    project_id: str | None = None
    tags: list[str] = []


class QosPolicyRequest(BaseModel):
    policy: QosPolicyInput


class QosPolicyResponse(BaseModel):
    policy: QosPolicy


class QosPolicyList(BaseModel):
    policies: list[QosPolicy]


class BandwidthLimitRuleInput(BaseModel):
    max_kbps: int | None = None
    max_burst_kbps: int = 0
    direction: Literal["egress", "ingress"] = "egress"


class BandwidthLimitRuleRequest(BaseModel):
    bandwidth_limit_rule: BandwidthLimitRuleInput


class BandwidthLimitRuleResponse(BaseModel):
    bandwidth_limit_rule: BandwidthLimitRule


class BandwidthLimitRuleList(BaseModel):
    bandwidth_limit_rules: list[BandwidthLimitRule]


class KeystoneErrorBody(BaseModel):
    code: int
    message: str
    title: str


class KeystoneError(BaseModel):
    error: KeystoneErrorBody
