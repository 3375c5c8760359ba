"""OMG IDL text for a ROS 2 type and its dependencies, made from the rosbags parse (for `idlc`)."""

from __future__ import annotations

from rosbags.interfaces import Nodetype

from .names import full_type_name
from .typestore import typestore

_IDL_BASE = {
    "bool": "boolean", "byte": "octet", "char": "uint8", "int8": "int8", "uint8": "uint8",
    "int16": "int16", "uint16": "uint16", "int32": "int32", "uint32": "uint32",
    "int64": "int64", "uint64": "uint64", "float32": "float", "float64": "double",
}


def _scoped(ros_type: str) -> str:
    pkg, sub, name = ros_type.split("/")
    return f"{pkg}::{sub}::dds_::{name}_"


def _type(desc: tuple) -> tuple[str, str]:
    """(IDL type, declarator suffix) for a field description."""
    kind, arg = desc
    if kind == Nodetype.BASE:
        name, bound = arg
        if name == "string":
            return (f"string<{bound}>" if bound else "string"), ""
        return _IDL_BASE[name], ""
    if kind == Nodetype.NAME:
        return _scoped(arg), ""
    sub, count = arg
    sub_t, _ = _type(sub)
    if kind == Nodetype.ARRAY:
        return sub_t, f"[{count}]"
    return (f"sequence<{sub_t}, {count}>" if count else f"sequence<{sub_t}>"), ""


def _deps(ros_type: str, fielddefs: dict, out: list[str]) -> None:
    """Depth-first: dependencies before the types that use them."""
    for _, (kind, arg) in fielddefs[ros_type][1]:
        nested = arg if kind == Nodetype.NAME else (arg[0][1] if kind != Nodetype.BASE and arg[0][0] == Nodetype.NAME else None)
        if nested and nested not in out:
            _deps(nested, fielddefs, out)
    if ros_type not in out:
        out.append(ros_type)


def idl_for(ros_type: str, distro: str = "jazzy") -> str:
    """IDL (one module per type, @final structs) declaring `ros_type` and everything it uses."""
    fielddefs = typestore(distro).fielddefs
    order: list[str] = []
    _deps(full_type_name(ros_type), fielddefs, order)
    chunks = []
    for t in order:
        pkg, sub, name = t.split("/")
        members = []
        for fname, desc in fielddefs[t][1]:
            ftype, suffix = _type(desc)
            members.append(f"        {ftype} {fname}{suffix};")
        body = "\n".join(members)
        chunks.append(f"module {pkg} {{ module {sub} {{ module dds_ {{\n"
                      f"    @final struct {name}_ {{\n{body}\n    }};\n}}; }}; }};\n")
    return "\n".join(chunks)
