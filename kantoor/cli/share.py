"""``kantoor share …``: share a drive folder or file with a group, list an owner's shares, revoke one.

Paths are inside the owner's drive as the owner sees it at ``/files/<login>/``:
``/Documents/report.odt`` (one file) or ``/Projects`` (a folder and everything
below it). Members of the group then find it under ``Shared with me/`` of their
own drive; a revoke removes it from there at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def _owner(core, login: str):  # type: ignore[no-untyped-def]
    from kantoor.cli.main import CommandError

    account = core.store.get_account(login)
    if account is None:
        raise CommandError(f"no account {login.lower()}")
    return account


def cmd_share_add(args: argparse.Namespace) -> int:
    from kantoor.cli.main import _core

    core = _core(args)
    owner = _owner(core, args.owner)
    share = core.store.share_drive_path(owner.principal_id, args.path, args.group, args.right)
    print(f"{owner.login}:{share.path} is shared with {share.group} ({share.right})")
    return 0


def cmd_share_list(args: argparse.Namespace) -> int:
    from kantoor.cli.main import _core

    core = _core(args)
    owner = _owner(core, args.owner)
    for share in core.store.drive_shares(owner.principal_id):
        print(f"{share.path}\t{share.group}\t{share.right}")
    return 0


def cmd_share_revoke(args: argparse.Namespace) -> int:
    from kantoor.cli.main import _core

    core = _core(args)
    owner = _owner(core, args.owner)
    core.store.unshare_drive_path(owner.principal_id, args.path, args.group)
    print(f"{owner.login}:{args.path} is no longer shared with {args.group}")
    return 0


def register(sub: argparse._SubParsersAction,
             add: Callable[[argparse._SubParsersAction, str, Handler, str], argparse.ArgumentParser]) -> None:
    """Add ``share add|list|revoke`` to the ``kantoor`` parser."""
    share = sub.add_parser("share", help="share drive folders and files with groups").add_subparsers(
        dest="share_command", required=True)
    p = add(share, "add", cmd_share_add, "share a folder or file of a drive with a group (or change the right)")
    p.add_argument("owner", help="login of the drive's owner")
    p.add_argument("path", help="folder or file inside the drive, e.g. /Documents/report.odt")
    p.add_argument("group", help="a group the owner belongs to")
    p.add_argument("right", choices=("read", "write"))
    p = add(share, "list", cmd_share_list, "list the shares of an owner's drive (path, group, right)")
    p.add_argument("owner")
    p = add(share, "revoke", cmd_share_revoke, "stop sharing a folder or file with a group")
    p.add_argument("owner")
    p.add_argument("path")
    p.add_argument("group")
