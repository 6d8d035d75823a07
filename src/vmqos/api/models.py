"""Pydantic models of the API's bodies, for /openapi.json and the clients generated from it.

Requests are read by services.neutron_input with Neutron's own checks and messages, not by these
models (a model would answer a bad value with its own words and a 422); responses are built by the
services and described here.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, Field, create_model


class NeutronErrorBody(BaseModel):
    type: str = Field(description="Neutron's exception name, e.g. QosPolicyNotFound or HTTPBadRequest")
    message: str
    detail: str = ""


class NeutronErrorResponse(BaseModel):
    NeutronError: NeutronErrorBody


Direction = Literal["egress", "ingress"]


class BandwidthLimitRule(BaseModel):
    id: str
    max_kbps: int = Field(ge=0, le=2**31 - 1, description="kbit/s of 1000 bit; 0 is no limit")
    max_burst_kbps: int = Field(0, ge=0, le=2**31 - 1, description="a size, in kilobits of 1000 bit")
    direction: Direction = "egress"


class DscpMarkingRule(BaseModel):
    id: str
    dscp_mark: int = Field(description="one of Neutron's VALID_DSCP_MARKS: 0, 8, 10, ..., 56")


class MinimumBandwidthRule(BaseModel):
    id: str
    min_kbps: int = Field(ge=0, le=2**31 - 1, description="guaranteed kbit/s of 1000 bit")
    direction: Direction = "egress"


class PacketRateLimitRule(BaseModel):
    id: str
    max_kpps: int = Field(ge=0, le=2**31 - 1, description="thousands of packets per second")
    max_burst_kpps: int = Field(0, ge=0, le=2**31 - 1, description="thousands of packets")
    direction: Direction = "egress"


class MinimumPacketRateRule(BaseModel):
    id: str
    min_kpps: int = Field(ge=0, le=2**31 - 1, description="guaranteed thousands of packets per second")
    direction: Literal["any", "egress", "ingress"] = "egress"


class PolicyRule(BaseModel):
    """A rule inside its policy: its id, type, policy id and its type's fields."""

    model_config = {"extra": "allow"}
    id: str
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


class QosPolicyRequest(BaseModel):
    policy: QosPolicyInput


class QosPolicyResponse(BaseModel):
    policy: QosPolicy


class QosPolicyList(BaseModel):
    policies: list[QosPolicy]


def _rule_models(rtype: str, rule: type[BaseModel]) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    """The request, response and list bodies of one rule type: {"<type>_rule": ...}, {"<type>_rules": [...]}."""
    fields: dict[str, Any] = {k: (Optional[v.annotation], None) for k, v in rule.model_fields.items() if k != "id"}
    request_inner = create_model(f"{rule.__name__}Input", **fields)
    wrapped: dict[str, Any] = {f"{rtype}_rule": (request_inner, ...)}
    request = create_model(f"{rule.__name__}Request", **wrapped)
    wrapped = {f"{rtype}_rule": (rule, ...)}
    response = create_model(f"{rule.__name__}Response", **wrapped)
    wrapped = {f"{rtype}_rules": (list[rule], ...)}  # type: ignore[valid-type]
    listing = create_model(f"{rule.__name__}List", **wrapped)
    return request, response, listing


RULE_MODELS = {rtype: _rule_models(rtype, rule) for rtype, rule in (
    ("bandwidth_limit", BandwidthLimitRule), ("dscp_marking", DscpMarkingRule),
    ("minimum_bandwidth", MinimumBandwidthRule), ("packet_rate_limit", PacketRateLimitRule),
    ("minimum_packet_rate", MinimumPacketRateRule))}


class Tags(BaseModel):
    tags: list[str] = Field(description="at most 50 unique strings of at most 255 characters")


class ParameterDetail(BaseModel):
    parameter_name: str
    parameter_type: Literal["range", "choices"]
    parameter_values: dict[str, int] | list[int | str]


class RuleTypeDriver(BaseModel):
    name: str
    supported_parameters: list[ParameterDetail]


class RuleType(BaseModel):
    type: str
    drivers: list[RuleTypeDriver] | None = None


class RuleTypeResponse(BaseModel):
    rule_type: RuleType


class RuleTypeList(BaseModel):
    rule_types: list[RuleType]


class RbacPolicy(BaseModel):
    id: str
    project_id: str
    tenant_id: str
    object_type: Literal["qos_policy"]
    object_id: str
    action: Literal["access_as_shared"]
    target_tenant: str = Field(description="a project id, or * for every project")


class RbacPolicyInput(BaseModel):
    object_type: str | None = None
    object_id: str | None = None
    action: str | None = None
    target_tenant: str | None = None
    project_id: str | None = None


class RbacPolicyRequest(BaseModel):
    rbac_policy: RbacPolicyInput


class RbacPolicyResponse(BaseModel):
    rbac_policy: RbacPolicy


class RbacPolicyList(BaseModel):
    rbac_policies: list[RbacPolicy]


class KeystoneErrorBody(BaseModel):
    code: int
    message: str
    title: str


class KeystoneError(BaseModel):
    error: KeystoneErrorBody
