"""`vmqos convert`: between Nova, libvirt, domiftune, Neutron, Cinder and vmqos's own file."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from typing import Any

import click

from vmqos.cli.output import print_json, print_notes, print_text
from vmqos.core.errors import FormatError
from vmqos.core.formats import FORMATS, get_format
from vmqos.core.model.checks import check_network
from vmqos.core.model.document import QosDocument
from vmqos.core.model.network import DirectionQos, NetworkQos
from vmqos.core.units import human_pps, human_rate, human_size

_SURROGATE_ESCAPE = re.compile("[\udc80-\udcff]")


def read_input(path: str | None) -> str:
    """The text of FILE or of standard input (`-`); every format vmqos reads is UTF-8 text."""
    if path in (None, "-"):
        if sys.stdin.isatty():
            raise click.UsageError("no FILE given and nothing on standard input; pass a file or pipe one in")
        try:
            text = sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise _not_utf8("standard input", exc.object, exc.start) from None
        escaped = _SURROGATE_ESCAPE.search(text)  # a C locale reads stdin with errors="surrogateescape"
        if escaped:
            raw = text[:escaped.start()].encode("utf-8", "surrogateescape")
            raise _not_utf8("standard input", raw + bytes([ord(escaped.group()) - 0xDC00]), len(raw))
        return text
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError:
        with open(path, "rb") as raw:
            data = raw.read()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(path, data, exc.start) from None
        raise  # pragma: no cover - the text read failed, the bytes decode: not a file that changed


def _not_utf8(name: str, data: bytes, start: int) -> FormatError:
    """A one-line error at the line and column of the first byte that is not UTF-8."""
    line_start = data.rfind(b"\n", 0, start) + 1
    return FormatError(name, f"not UTF-8 text: byte {data[start]:#04x} at column {start - line_start + 1} "
                             "cannot be decoded; save the file as UTF-8", line=data.count(b"\n", 0, start) + 1)


def direction_json(d: DirectionQos) -> dict[str, Any]:
    bw, pr = d.bandwidth, d.packet_rate
    return {
        "rate_bps": bw.rate_bps if bw else None,
        "peak_bps": bw.peak_bps if bw else None,
        "burst_bytes": bw.burst_bytes if bw else None,
        "pps": pr.pps if pr else None,
        "pps_burst": pr.burst_packets if pr else None,
        "dscp": d.dscp,
        "min_bps": d.min_bps,
        "min_pps": d.min_pps,
        "classes": [{"name": c.name, "share_percent": c.share_percent,
                     "match": None if c.match is None else
                     {"protocol": c.match.protocol, "ports": list(c.match.ports), "dscp": c.match.dscp}}
                    for c in d.classes],
    }


def network_json(q: NetworkQos | None) -> dict[str, Any] | None:
    if q is None:
        return None
    out: dict[str, Any] = {"ingress": direction_json(q.ingress), "egress": direction_json(q.egress)}
    if q.min_pps_any is not None:
        out["min_pps_any"] = q.min_pps_any
    return out


# Formats whose shares libvirt writes into cpu.weight unconverted on cgroup v2 (LP#1978489).
RAW_WEIGHT_FORMATS = ("nova", "libvirt")
RAW_WEIGHT_BY = "libvirt (unconverted)"


def effective_json(doc: QosDocument, *, raw_weight: bool = False) -> dict[str, Any]:
    """`raw_weight`: the input is Nova's or libvirt's, whose shares libvirt writes as they are into
    cpu.weight; the weight shown is then the shares, and `weight_written_by` says so."""
    cpu: dict[str, Any] | None = None
    if doc.cpu is not None:
        cpu = {"shares": doc.cpu.shares, "weight": doc.cpu.shares if raw_weight else doc.cpu.weight,
               "period_us": doc.cpu.period_us, "quota_us": doc.cpu.quota_us, "cpus": doc.cpu.cpus}
        if raw_weight:
            cpu["weight_written_by"] = RAW_WEIGHT_BY
    return {
        "name": doc.name,
        "network": network_json(doc.network),
        "interfaces": {dev: network_json(q) for dev, q in doc.interfaces.items()},
        "cpu": cpu,
        "disk": doc.disk.items() if doc.disk else None,
        "disks": {dev: d.items() for dev, d in doc.disks.items()},
    }


def _direction_lines(name: str, d: DirectionQos) -> list[str]:
    parts: list[str] = []
    if d.bandwidth:
        bw = d.bandwidth
        parts.append(f"rate {bw.rate_bps:,} bit/s ({human_rate(bw.rate_bps)})")
        if bw.peak_bps:
            parts.append(f"peak {bw.peak_bps:,} bit/s ({human_rate(bw.peak_bps)})")
        if bw.burst_bytes:
            parts.append(f"burst {bw.burst_bytes:,} B ({human_size(bw.burst_bytes)})")
    if d.packet_rate:
        parts.append(f"pps {human_pps(d.packet_rate.pps)}"
                     + (f" burst {d.packet_rate.burst_packets:,}" if d.packet_rate.burst_packets else ""))
    if d.dscp is not None:
        parts.append(f"dscp {d.dscp} (TOS {d.dscp << 2:#04x})")
    if d.min_bps:
        parts.append(f"min {d.min_bps:,} bit/s ({human_rate(d.min_bps)})")
    if d.min_pps:
        parts.append(f"min {human_pps(d.min_pps)}")
    for c in d.classes:
        parts.append(f"class {c.name} {c.share_percent}%")
    return [f"  {name:<8} " + ("; ".join(parts) if parts else "no limit")]


def effective_text(doc: QosDocument, *, raw_weight: bool = False) -> str:
    lines: list[str] = [f"{doc.name or '(unnamed)'}"]
    scopes: list[tuple[str, NetworkQos]] = []
    if doc.network is not None:
        scopes.append(("network (every interface)", doc.network))
    scopes += [(f"interface {dev}", q) for dev, q in doc.interfaces.items()]
    for title, q in scopes:
        lines.append(title)
        lines += _direction_lines("ingress", q.ingress) + _direction_lines("egress", q.egress)
    if doc.cpu is not None and not doc.cpu.is_empty:
        c = doc.cpu
        cpu = []
        if c.shares is not None:
            cpu.append(f"shares {c.shares} (cgroup v2 weight {c.shares}, written unconverted by libvirt)"
                       if raw_weight else f"shares {c.shares} (cgroup v2 weight {c.weight})")
        if c.quota_us is not None:
            cpu.append(f"quota {c.quota_us} us per {c.period_us or 100000} us = {c.cpus:.2f} CPU")
        elif c.period_us is not None:
            cpu.append(f"period {c.period_us} us")
        lines.append("cpu      " + "; ".join(cpu))
    disks = ([("disk (every disk)", doc.disk)] if doc.disk else []) + [(f"disk {k}", v) for k, v in doc.disks.items()]
    for title, d in disks:
        items = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in d.items().items())
        lines.append(f"{title}: {items or 'no limit'}")
    return "\n".join(lines)


@click.command()
@click.option("--from", "src", required=True, type=click.Choice(list(FORMATS)), help="Format of the input.")
@click.option("--to", "dst", required=True, type=click.Choice([*FORMATS, "effective"]),
              help="Format to write; `effective` prints the canonical per-direction limits.")
@click.option("--size", "size_gb", type=click.IntRange(min=1), help="Volume size in GiB for cinder per-GB specs.")
@click.option("--instance", help="Which instance of a vmqos host file to convert.")
@click.option("--json", "as_json", is_flag=True, help="With --to effective: print JSON.")
@click.argument("file", required=False)
def convert(src: str, dst: str, size_gb: int | None, instance: str | None, as_json: bool, file: str | None) -> None:
    """Convert QoS between the formats operators already use (FILE or - for stdin).

    \b
    Formats: nova (flavor extra specs: key=value lines or JSON), libvirt (domain XML or bare
    <bandwidth>/<iotune>/<cputune>), domiftune (virsh domiftune arguments), neutron (a QoS policy
    as the API returns it), cinder (a QoS spec plus a volume size), vmqos (vmqos's host file).
    \b
    Examples:
      vmqos convert --from nova --to libvirt flavor.specs
      echo '--outbound 12800,0,0' | vmqos convert --from domiftune --to effective
      vmqos convert --from neutron --to nova policy.json
      vmqos convert --from cinder --to libvirt --size 50 gold-qos.json
    """
    text = read_input(file)
    options: dict[str, Any] = {}
    if src == "cinder" and size_gb is not None:
        options["size_gb"] = size_gb
    if src == "vmqos" and instance is not None:
        options["instance"] = instance
    doc = get_format(src).read(text, **options)
    notes = list(doc.notes)
    if dst == "effective":
        for q in [doc.network, *doc.interfaces.values()]:
            if q is not None:
                notes += check_network(q)
        print_notes(notes)
        raw_weight = src in RAW_WEIGHT_FORMATS
        if as_json:
            print_json(effective_json(doc, raw_weight=raw_weight))
        else:
            print_text(effective_text(doc, raw_weight=raw_weight))
        return
    # Notes go to stderr once, for every --to format; the output is the converted document alone
    # (the vmqos writer would also put them in as `# info:` comments, which a caller writing a file
    # itself may want, but here they would be printed twice).
    print_notes(notes)
    print_text(get_format(dst).write(replace(doc, notes=())))
