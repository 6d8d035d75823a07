"""`vmqos volume-type ...` and `vmqos volume ...`: Cinder-style volume QoS, applied live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import click

from vmqos.cli.convert import read_input
from vmqos.cli.output import print_json, print_notes, stdout
from vmqos.cli.option_help import DB_HELP
from vmqos.core.desired.instances import check_volume_type, volume_type_from_cinder, volume_type_from_specs
from vmqos.core.errors import InvalidValue, NotFound
from vmqos.lab import DEFAULT_NAME
from vmqos.services.ports import open_store
from vmqos.services.volumes import (
    describe_volume_type,
    volume_attach,
    volume_create,
    volume_detach,
    volume_extend,
    volume_info,
    volume_list,
    volume_scope,
    volume_type_list,
    volume_type_show,
)

if TYPE_CHECKING:  # types only: the CLI reaches the store through services (a contract forbids it at run time)
    from vmqos.core.model.volume import Volume
    from vmqos.store import Store


def where_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--db", metavar="URL", help=DB_HELP)(func)
    func = click.option("--connect", metavar="URI", help="the volumes belong to libvirt domains of this URI "
                        "(e.g. qemu:///system); their state is the host's own scope")(func)
    return click.option("--lab", default=None, metavar="LAB",
                        help=f"the volumes belong to instances of this lab (default: {DEFAULT_NAME}, unless "
                             "--connect is given)")(func)


def _where(lab: str | None, connect: str | None) -> tuple[str, str | None, str | None]:
    if lab and connect:
        raise InvalidValue("--lab/--connect", f"{lab} and {connect}", "volumes belong to a lab or to libvirt "
                                                                      "domains; give one")
    if connect:
        return "", None, connect
    lab = lab or DEFAULT_NAME
    return volume_scope(lab), lab, None


def _store(db: str | None, read_only: bool = False):
    return open_store(db, read_only=read_only)


# ------------------------------------------------------------------------------------- volume types


@click.group("volume-type")
def volume_type() -> None:
    """Volume types with a Cinder QoS spec (consumer front-end, back-end or both).

    Front-end and both specs are enforced on the host (per-GB keys computed for each volume's
    size, exactly as Cinder does); back-end specs are for the storage back end: stored and
    shown, never applied on the host.

    \b
    Examples:
      vmqos volume-type create gold --consumer front-end --spec write_bytes_sec_per_gb=1048576 \\
                                      --spec write_bytes_sec_per_gb_min=1048576 --spec write_iops_sec=100
      vmqos volume-type create silver --file qos-spec.json     # openstack volume qos show -f json
      vmqos volume-type list
    """


@volume_type.command("create")
@click.argument("name", required=False)
@click.option("--consumer", type=click.Choice(["front-end", "back-end", "both"]),
              help="who enforces the spec (Cinder's default: back-end, never applied on the host)")
@click.option("--spec", "specs", multiple=True, metavar="KEY=VALUE", help="a QoS spec key; repeat")
@click.option("--file", "path", metavar="FILE", help="a Cinder QoS spec as JSON ({\"qos_specs\": ...})")
@click.option("--json", "as_json", is_flag=True)
@where_options
def vt_create(name: str | None, consumer: str | None, specs: tuple[str, ...], path: str | None, as_json: bool,
              lab: str | None, connect: str | None, db: str | None) -> None:
    """Create or replace a volume type; attached volumes of that type get the new limits only when
    they are applied again (`vmqos volume extend`, attach, or `instance set`)."""
    if path:
        if specs:
            raise InvalidValue("--spec", specs[0], "give the specs in the file or with --spec, not both")
        vtype = volume_type_from_cinder(name, read_input(path))
        if consumer:
            from dataclasses import replace

            vtype = replace(vtype, consumer=consumer)
    else:
        if not name:
            raise InvalidValue("NAME", "", "name the volume type (or give --file with a named QoS spec)")
        pairs = {}
        for item in specs:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise InvalidValue("--spec", item, "expected KEY=VALUE, e.g. read_iops_sec_per_gb=10")
            pairs[key.strip()] = value.strip()
        vtype = volume_type_from_specs(name, consumer, pairs)
    notes = check_volume_type(vtype)
    scope, _, _ = _where(lab, connect)
    with _store(db) as store:
        store.save_volume_type(scope, vtype, actor="volume-type create")
    if as_json:
        print_json(describe_volume_type(vtype))
        return
    print_notes(notes)
    stdout.print(f"volume type {vtype.name}: consumer {vtype.consumer}, {len(vtype.specs)} spec key(s)")


@volume_type.command("list")
@click.option("--json", "as_json", is_flag=True)
@where_options
def vt_list(as_json: bool, lab: str | None, connect: str | None, db: str | None) -> None:
    """The volume types and their specs."""
    scope, _, _ = _where(lab, connect)
    with _store(db, read_only=True) as store:
        found = volume_type_list(store, scope)
    if as_json:
        print_json(found)
        return
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("name", "consumer", "applied on the host", "specs"):
        table.add_column(col)
    for v in found:
        table.add_row(v.name, v.consumer, "yes" if v.applied_on_host else "no (back-end)",
                      ", ".join(f"{k}={val}" for k, val in v.specs.items()))
    stdout.print(table)


@volume_type.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@where_options
def vt_show(name: str, as_json: bool, lab: str | None, connect: str | None, db: str | None) -> None:
    """One volume type, with what Cinder would do with its specs."""
    scope, _, _ = _where(lab, connect)
    with _store(db, read_only=True) as store:
        found = volume_type_show(store, scope, name)
    if as_json:
        print_json(found)
        return
    stdout.print(f"volume type {name}: consumer {found.consumer}" +
                 ("" if found.applied_on_host else " (back-end: stored and shown, never applied on the host)"))
    for key, value in found.specs.items():
        stdout.print(f"  {key} = {value}")
    print_notes(found.notes)


@volume_type.command("delete")
@click.argument("name")
@where_options
def vt_delete(name: str, lab: str | None, connect: str | None, db: str | None) -> None:
    """Delete a volume type that no volume uses."""
    scope, _, _ = _where(lab, connect)
    with _store(db) as store:
        store.delete_volume_type(scope, name)
    stdout.print(f"volume type {name} deleted")


# ------------------------------------------------------------------------------------------ volumes


@click.group("volume")
def volume() -> None:
    """Volumes with a size and a type, attached to an instance; their QoS is applied live.

    A lab instance's volume is a host block device (a loop device, an LV) that its cgroup
    throttles; a VM's is a disk target (vdb) that QEMU throttles through libvirt. Extending an
    attached volume recomputes its per-GB limits and applies them now (Cinder only does at the
    next attach).

    \b
    Examples:
      vmqos volume create data1 --type gold --size 1
      vmqos volume attach data1 vm1 --device /dev/loop0
      vmqos volume extend data1 --size 4        # per-GB limits x4, live
      vmqos volume show data1 --json
      vmqos volume detach data1
    """


def _report(volume_obj: Volume, store: Store, scope: str, writes: int | None, as_json: bool, verb: str) -> None:
    info = volume_info(store, scope, volume_obj, writes)
    if as_json:
        print_json(info)
        return
    print_notes(info.notes)
    where = f", attached to {volume_obj.instance} as {volume_obj.device}" if volume_obj.attached else ""
    limits = ", ".join(f"{k}={v:,}" for k, v in info.applied_on_host.items()) or "no host limits"
    live = f"; {writes} kernel value(s) written" if writes else ""
    stdout.print(f"volume {volume_obj.name} {verb}: {volume_obj.size_gb} GiB{where}; {limits}{live}")


@volume.command("create")
@click.argument("name")
@click.option("--type", "vtype", metavar="TYPE", help="its volume type (none: no QoS)")
@click.option("--size", type=int, required=True, metavar="GIB", help="its size in GiB")
@click.option("--json", "as_json", is_flag=True)
@where_options
def vol_create(name: str, vtype: str | None, size: int, as_json: bool, lab: str | None, connect: str | None,
               db: str | None) -> None:
    """Create a volume (detached)."""
    scope, _, _ = _where(lab, connect)
    with _store(db) as store:
        _report(volume_create(store, scope, name, vtype, size), store, scope, None, as_json, "created")


@volume.command("extend")
@click.argument("name")
@click.option("--size", type=int, required=True, metavar="GIB", help="the new, larger size in GiB")
@click.option("--json", "as_json", is_flag=True)
@where_options
def vol_extend(name: str, size: int, as_json: bool, lab: str | None, connect: str | None, db: str | None) -> None:
    """Grow a volume; if attached, its per-GB limits are recomputed and applied now."""
    scope, lab_name, uri = _where(lab, connect)
    with _store(db) as store:
        vol, writes = volume_extend(store, scope, name, size, lab=lab_name, connect=uri)
        _report(vol, store, scope, writes, as_json, "extended")


@volume.command("attach")
@click.argument("name")
@click.argument("inst", metavar="INST")
@click.option("--device", required=True, metavar="DEV",
              help="a lab instance: the host block device (/dev/loop0); a VM: the disk target (vdb)")
@click.option("--json", "as_json", is_flag=True)
@where_options
def vol_attach(name: str, inst: str, device: str, as_json: bool, lab: str | None, connect: str | None,
               db: str | None) -> None:
    """Attach a volume to INST and apply its limits now."""
    scope, lab_name, uri = _where(lab, connect)
    with _store(db) as store:
        vol, writes = volume_attach(store, scope, name, inst, device, lab=lab_name, connect=uri)
        _report(vol, store, scope, writes, as_json, "attached")


@volume.command("detach")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@where_options
def vol_detach(name: str, as_json: bool, lab: str | None, connect: str | None, db: str | None) -> None:
    """Detach a volume; its limits are removed from the instance now."""
    scope, lab_name, uri = _where(lab, connect)
    with _store(db) as store:
        vol, writes = volume_detach(store, scope, name, lab=lab_name, connect=uri)
        _report(vol, store, scope, writes, as_json, "detached")


@volume.command("delete")
@click.argument("name")
@where_options
def vol_delete(name: str, lab: str | None, connect: str | None, db: str | None) -> None:
    """Delete a detached volume."""
    scope, _, _ = _where(lab, connect)
    with _store(db) as store:
        found = store.volumes(scope).get(name)
        if found is not None and found.attached:
            raise InvalidValue("volume", name, f"attached to {found.instance}; `vmqos volume detach {name}` first")
        store.delete_volume(scope, name)
    stdout.print(f"volume {name} deleted")


@volume.command("list")
@click.option("--json", "as_json", is_flag=True)
@where_options
def vol_list(as_json: bool, lab: str | None, connect: str | None, db: str | None) -> None:
    """The volumes, their size, attachment and the limits they put on the host."""
    scope, _, _ = _where(lab, connect)
    with _store(db, read_only=True) as store:
        found = volume_list(store, scope)
    if as_json:
        print_json(found)
        return
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("name", "type", "size", "attached to", "limits on the host"):
        table.add_column(col)
    for v in found:
        table.add_row(v.name, v.type or "-", f"{v.size_gb} GiB", f"{v.instance} {v.device}" if v.instance else "-",
                      ", ".join(f"{k}={val:,}" for k, val in v.applied_on_host.items()) or "none")
    stdout.print(table)


@volume.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@where_options
def vol_show(name: str, as_json: bool, lab: str | None, connect: str | None, db: str | None) -> None:
    """One volume: its type's specs and the limits computed for its size."""
    scope, _, _ = _where(lab, connect)
    with _store(db, read_only=True) as store:
        found = store.volumes(scope).get(name)
        if found is None:
            raise NotFound(f"no volume {name!r} (`vmqos volume list` shows them)")
        _report(found, store, scope, None, as_json, "is")
