"""Descriptors rendered as .proto-like text (what ``hwgate describe`` prints)."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor
from google.protobuf.descriptor import FieldDescriptor

_SCALARS = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in vars(FieldDescriptor).items()
    if name.startswith("TYPE_")
}


def _field_type(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        desc = field.message_type
        if desc.GetOptions().map_entry:
            k, v = desc.fields_by_name["key"], desc.fields_by_name["value"]
            return f"map<{_field_type(k)}, {_field_type(v)}>"
        return "." + desc.full_name
    if field.enum_type is not None:
        return "." + field.enum_type.full_name
    return _SCALARS.get(field.type, "?")


def _label(field: FieldDescriptor) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return ""
    if field.is_repeated:
        return "repeated "
    if field.has_presence and field.containing_oneof is None and field.message_type is None:
        return "optional "
    return ""


def _field_line(field: FieldDescriptor, indent: str) -> str:
    return f"{indent}{_label(field)}{_field_type(field)} {field.name} = {field.number};"


def message(desc: descriptor.Descriptor) -> str:
    lines = [f"message {desc.name} {{"]
    oneofs = {o.name: o for o in desc.oneofs if not o.name.startswith("_")}
    done: set[str] = set()
    for field in desc.fields:
        group = field.containing_oneof
        if group is not None and group.name in oneofs:
            if group.name not in done:
                done.add(group.name)
                lines.append(f"  oneof {group.name} {{")
                lines += [_field_line(f, "    ") for f in group.fields]
                lines.append("  }")
            continue
        lines.append(_field_line(field, "  "))
    lines.append("}")
    return "\n".join(lines)


def enum(desc: descriptor.EnumDescriptor) -> str:
    body = [f"  {v.name} = {v.number};" for v in desc.values]
    return "\n".join([f"enum {desc.name} {{", *body, "}"])


def method(desc: descriptor.MethodDescriptor) -> str:
    req = ("stream ." if desc.client_streaming else ".") + desc.input_type.full_name
    res = ("stream ." if desc.server_streaming else ".") + desc.output_type.full_name
    return f"rpc {desc.name} ( {req} ) returns ( {res} );"


def service(desc: descriptor.ServiceDescriptor) -> str:
    return "\n".join([f"service {desc.name} {{", *(f"  {method(m)}" for m in desc.methods), "}"])


def render(symbol: Any) -> tuple[str, str]:
    """(kind, text) for any descriptor."""
    if isinstance(symbol, descriptor.ServiceDescriptor):
        return "a service", service(symbol)
    if isinstance(symbol, descriptor.MethodDescriptor):
        return "a method", method(symbol)
    if isinstance(symbol, descriptor.Descriptor):
        return "a message", message(symbol)
    if isinstance(symbol, descriptor.EnumDescriptor):
        return "an enum", enum(symbol)
    if isinstance(symbol, descriptor.FieldDescriptor):
        return "a field", _field_line(symbol, "")
    if isinstance(symbol, descriptor.EnumValueDescriptor):
        return "an enum value", f"{symbol.name} = {symbol.number};"
    return "a symbol", str(symbol)
