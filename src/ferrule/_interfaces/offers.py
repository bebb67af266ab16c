"""Matching an implementation a plugin offers to the host's declaration of
the same interface id and revision: the layout fingerprint decides."""

from __future__ import annotations

from .._abi.spec import OfferSpec
from .._errors import InterfaceMismatchError
from ..idl import InterfaceSpec, first_difference

__all__ = ["check_offer", "indent"]


def check_offer(plugin_id: str, offer: OfferSpec, iface: InterfaceSpec) -> None:
    """Raise InterfaceMismatchError unless offer was generated from iface."""
    if offer.fingerprint == iface.fingerprint and offer.method_count == len(iface.methods):
        return
    if offer.fingerprint == iface.fingerprint:
        detail = f"it has {offer.method_count} methods, the declaration {len(iface.methods)}"
    elif offer.layout:
        detail = "first difference: " + first_difference(iface.layout, offer.layout)
    else:
        detail = "the plugin gives no layout text"
    found = offer.layout or "(not given)\n"
    raise InterfaceMismatchError(
        f"plugin {plugin_id!r} implementation {offer.name!r} of {iface.id}/{iface.revision} has layout fingerprint "
        f"{offer.fingerprint:#018x}, the host's declaration {iface.name} has {iface.fingerprint:#018x}; {detail}. "
        f"Regenerate the plugin's code from the host's declaration (ferrule generate), or declare the changed "
        f"interface as a new revision.\nhost layout:\n{indent(iface.layout)}plugin layout:\n{indent(found)}",
        iface.layout,
        offer.layout,
    )


def indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())
