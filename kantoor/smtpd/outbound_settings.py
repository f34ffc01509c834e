"""Outbound delivery settings (the ``[delivery]`` section, ``KANTOOR_DELIVERY_*``) and their parsers."""

from __future__ import annotations

from kantoor.config.settings import DeliverySettings, Settings


def delivery_settings(settings: Settings) -> DeliverySettings:
    """The ``[delivery]`` section of the settings."""
    return settings.delivery


def host_port(text: str, default_port: int = 25) -> tuple[str, int]:
    """``"host:port"``, ``"host"`` or ``"[v6]:port"`` → (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


def static_mx_map(text: str) -> dict[str, list[tuple[str, int]]]:
    """Parse ``static_mx``: domain → [(host, port), …] in preference order (``|`` separates hosts)."""
    result: dict[str, list[tuple[str, int]]] = {}
    for entry in text.split(","):
        domain, sep, hosts = entry.partition("=")
        if sep and domain.strip():
            result[domain.strip().lower()] = [host_port(h) for h in hosts.split("|") if h.strip()]
    return result
