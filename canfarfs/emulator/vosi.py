"""VOSI documents: capabilities (vospace-api.md §1.3) and availability."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

_SECURITY = (
    "ivo://ivoa.net/sso#cookie",
    "ivo://ivoa.net/sso#tls-with-certificate",
    "ivo://ivoa.net/sso#token",
)

#: (standardID, path, accessURL use) for each VOSpace capability the emulator serves.
_VOSPACE_CAPS = (
    ("ivo://ivoa.net/std/VOSI#capabilities", "/capabilities", "full"),
    ("ivo://ivoa.net/std/VOSI#availability", "/availability", "full"),
    ("ivo://ivoa.net/std/VOSpace/v2.0#nodes", "/nodes", "base"),
    ("ivo://ivoa.net/std/VOSpace#sync-2.1", "/synctrans", "full"),
    ("ivo://ivoa.net/std/VOSpace/v2.0#transfers", "/transfers", "full"),
    ("ivo://ivoa.net/std/VOSpace#files-proto", "/files", "base"),
    ("ivo://ivoa.net/std/VOSpace#recursive-delete-proto", "/async-delete", "full"),
)


def _interface(url: str, use: str, methods: tuple[str, ...]) -> str:
    sm = "".join(f"\n      <securityMethod standardID={quoteattr(m)} />" for m in methods)
    return (
        '    <interface xsi:type="vs:ParamHTTP" role="std">\n'
        f"      <accessURL use={quoteattr(use)}>{escape(url)}</accessURL>{sm}\n"
        "    </interface>"
    )


def capabilities_xml(caps: list[tuple[str, str, str]], anonymous: bool = True) -> bytes:
    """Capabilities with, per capability, a bare (anonymous) and an authenticated interface.

    vosfs accepts an interface for anonymous use only if it lists no security method,
    so each capability carries both (vospace-api.md §1.3, emulator note).
    """
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">',
    ]
    for standard_id, url, use in caps:
        out.append(f"  <capability standardID={quoteattr(standard_id)}>")
        if anonymous:
            out.append(_interface(url, use, ()))
        out.append(_interface(url, use, _SECURITY))
        out.append("  </capability>")
    out.append("</vosi:capabilities>")
    return ("\n".join(out) + "\n").encode()


def vospace_capabilities_xml(base: str, service: str) -> bytes:
    """The capabilities of arc or vault at ``base`` (e.g. http://host:port/arc)."""
    caps = [(sid, base + path, use) for sid, path, use in _VOSPACE_CAPS]
    return capabilities_xml(caps)


def availability_xml(note: str, available: bool = True) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
        f"  <vosi:available>{'true' if available else 'false'}</vosi:available>\n"
        f"  <vosi:note>{escape(note)}</vosi:note>\n"
        "</vosi:availability>\n"
    ).encode()
