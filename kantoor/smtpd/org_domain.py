"""The DMARC organizational domain (RFC 7489 section 3.2), from one public suffix list per process.

authheaders' own ``get_org_domain`` opens the public suffix list and builds a
``publicsuffix2.PublicSuffixList`` (~9,000 IDNA-encoded rules) on every call, several
times per message: that was over half of the MX's CPU per message. It has no parameter
to pass a prepared list or another lookup, so :func:`install` replaces that one function
in authheaders' two namespaces with :func:`org_domain`, which reads the *same* file
(authheaders' ``findpsl`` override or its bundled copy) once, so answers do not change.
"""

from __future__ import annotations

import functools
import importlib.resources
import threading
from pathlib import Path

from publicsuffix2 import PublicSuffixList

_lock = threading.Lock()
_list: PublicSuffixList | None = None


def _suffix_list_text() -> str:
    """The public suffix list authheaders itself would read."""
    try:
        # A distribution may point authheaders at the system copy of the list this way.
        from authheaders.findpsl import location  # type: ignore[import-not-found]
        return Path(location).read_text(encoding="utf-8")
    except ModuleNotFoundError:
        return (importlib.resources.files("authheaders") / "public_suffix_list.txt").read_text(encoding="utf-8")


def _suffixes() -> PublicSuffixList:
    global _list
    if _list is None:
        with _lock:  # MX sessions check mail in several worker threads at once: build it once
            if _list is None:
                _list = PublicSuffixList(_suffix_list_text().splitlines())
    return _list


@functools.lru_cache(maxsize=4096)
def org_domain(domain: str) -> str | None:
    """The registrable domain of ``domain`` (``mail.example.co.uk`` → ``example.co.uk``), exactly as
    authheaders computes it (a bare public suffix comes back as itself). Cached: sender domains recur."""
    return _suffixes().get_public_suffix(domain)


def warm_up() -> None:
    """Build the list now, in a thread of its own, so the first messages after start do not wait ~0.5 s
    for it (the MX's DMARC check needs it for every message)."""
    threading.Thread(target=_suffixes, name="public-suffix-list", daemon=True).start()


def install() -> None:
    """Make authheaders' DMARC code use :func:`org_domain` (idempotent)."""
    import authheaders
    import authheaders.dmarc_lookup

    # authheaders/__init__ imported the name, so both module namespaces hold a reference.
    authheaders.dmarc_lookup.get_org_domain = org_domain
    authheaders.get_org_domain = org_domain  # type: ignore[attr-defined]
