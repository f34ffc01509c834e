"""``kantoor …``: serve, db, user, domain, group, plan and queue commands.

Errors are one line on stderr and a non-zero exit status; no tracebacks for
mistakes a user can make (unknown account, taken name, bad configuration).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable

from kantoor.config import ConfigError, Settings, load_settings


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config or os.environ.get("KANTOOR_CONFIG") or None)


def _core(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from kantoor.core import open_core

    return open_core(_settings(args))


def _read_password(args: argparse.Namespace, login: str) -> str:
    from kantoor.auth import WeakPassword, check_password_strength, generate_password

    if getattr(args, "generate", False):
        return generate_password()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {login}: ")
        if getpass.getpass("Again: ") != password:
            raise CommandError("passwords differ")
    try:
        check_password_strength(password, login)
    except WeakPassword as exc:
        raise CommandError(f"weak password: {exc}") from None
    return password


# ---------------------------------------------------------------- commands
def cmd_serve(args: argparse.Namespace) -> int:
    from kantoor.server import run

    return run(_settings(args))


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    core = _core(args)
    core.close()
    print("database is up to date")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from kantoor.auth import hash_password

    settings = _settings(args)
    core = _core(args)
    plan = args.plan or settings.accounts.default_plan
    core.quota.plan(plan)
    login = args.login.strip().lower()
    if "@" not in login:
        raise CommandError(f"{login}: the login is an e-mail address (name@domain)")
    password = _read_password(args, login)
    core.store.create_account(login, hash_password(password), plan, role=args.role,
                              first_name=args.first_name or "", last_name=args.last_name or "")
    print(f"created {login} (plan {plan})")
    if args.generate:
        print(f"password: {password}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    core = _core(args)
    for account in core.store.list_accounts():
        last = account.last_login_at.strftime("%Y-%m-%d %H:%M") if account.last_login_at else "never"
        print(f"{account.login}\t{account.plan}\t{account.state}\t{account.role}\tlast login {last}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    from kantoor.auth import hash_password

    core = _core(args)
    account = core.store.get_account(args.login)
    if account is None:
        raise CommandError(f"no account {args.login}")
    password = _read_password(args, account.login)
    core.store.update_account(account.login, password_hash=hash_password(password), must_change_password=False)
    print(f"password changed for {account.login}")
    if args.generate:
        print(f"password: {password}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    core = _core(args)
    state = "active" if args.enable else "disabled"
    core.store.update_account(args.login, state=state)
    print(f"{args.login.lower()} is {state}")
    return 0


def cmd_user_delete(args: argparse.Namespace) -> int:
    core = _core(args)
    if not args.yes:
        raise CommandError("deleting an account destroys all of its data; repeat with --yes to confirm")
    core.store.delete_account(args.login)
    core.store.collect_garbage(grace_seconds=0)
    print(f"deleted {args.login.lower()} and all of its data")
    return 0


def cmd_domain_add(args: argparse.Namespace) -> int:
    from kantoor.smtpd.dkim_keys import dns_records, generate_key, key_path
    from kantoor.smtpd.outbound_settings import delivery_settings

    core = _core(args)
    settings = core.settings
    # Refuses what is no host name before anything is written (ValueError: one line, exit status 1).
    domain = core.store.add_domain(args.domain, owner_login=args.owner)
    key = generate_key(settings.data_dir, domain.name)
    print(f"added domain {domain.name}")
    print(f"DKIM signing key: {key_path(settings.data_dir, domain.name)}")
    print()
    print("Publish these DNS records (MX, SPF, DKIM, DMARC):")
    selector = delivery_settings(settings).dkim_selector
    for record in dns_records(domain.name, settings.server.hostname, selector, key):
        print(record)
    return 0


def cmd_domain_dns(args: argparse.Namespace) -> int:
    from kantoor.smtpd.dkim_keys import dns_records, generate_key
    from kantoor.smtpd.outbound_settings import delivery_settings
    from kantoor.storage.accounts import domain_name

    core = _core(args)
    settings = core.settings
    name = domain_name(args.domain)  # as stored: `domain dns bücher.test` finds xn--bcher-kva.test
    if not core.store.is_local_domain(name):
        raise CommandError(f"{name} is not a mail domain of this server")
    key = generate_key(settings.data_dir, name)  # creates one for domains added before DKIM existed
    for record in dns_records(name, settings.server.hostname, delivery_settings(settings).dkim_selector, key):
        print(record)
    return 0


def cmd_queue_list(args: argparse.Namespace) -> int:
    from kantoor.storage.outbound import recipients_of

    core = _core(args)
    rows = core.store.list_outbound(None if args.all else "queued")
    for row in rows:
        due = row.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S")
        recipients = ",".join(recipients_of(row))
        print(f"{row.id}\t{row.state}\t<{row.sender}>\t{recipients}\t{row.size} B\tattempts {row.attempts}\t"
              f"next {due}\t{row.last_error[:200]}")
    if not rows:
        print("the queue is empty")
    return 0


def cmd_queue_retry(args: argparse.Namespace) -> int:
    from kantoor.storage import NotFound

    if not args.all and not args.ids:
        raise CommandError("queue retry: give the ids of queued messages, or --all")
    core = _core(args)
    if not args.all:
        # All or none: every id is checked before any message is made due.
        queued = {row.id for row in core.store.list_outbound()}
        for message_id in args.ids:
            if message_id not in queued:
                raise CommandError(f"no queued message {message_id}")
        for message_id in dict.fromkeys(args.ids):
            core.store.retry_outbound(message_id)
        print(f"{len(set(args.ids))} message(s) due for delivery now")
        return 0
    due = 0
    for row in core.store.list_outbound():
        try:
            core.store.retry_outbound(row.id)
        except NotFound:
            continue  # delivered, failed or deleted since it was listed: the server's queue works meanwhile
        due += 1
    print(f"{due} message(s) due for delivery now")
    return 0


def cmd_queue_delete(args: argparse.Namespace) -> int:
    core = _core(args)
    # All or none, like retry: the store checks every id and deletes in one transaction (NotFound: exit 1).
    ids = list(dict.fromkeys(args.ids))
    core.store.delete_outbound(*ids)
    print(f"deleted {len(ids)} message(s) from the queue: {', '.join(map(str, ids))}")
    return 0


def cmd_domain_list(args: argparse.Namespace) -> int:
    core = _core(args)
    for domain in core.store.list_domains():
        print(domain.name)
    return 0


def cmd_group_create(args: argparse.Namespace) -> int:
    core = _core(args)
    core.store.create_group(args.name, args.admin)
    print(f"created group {args.name} administered by {args.admin.lower()}")
    return 0


def cmd_group_add_member(args: argparse.Namespace) -> int:
    core = _core(args)
    core.store.add_member(args.group, args.login, can_write=args.write)
    print(f"{args.login.lower()} is now a member of {args.group}")
    return 0


def cmd_group_remove_member(args: argparse.Namespace) -> int:
    core = _core(args)
    core.store.remove_member(args.group, args.login)
    print(f"{args.login.lower()} removed from {args.group}")
    return 0


def cmd_group_list(args: argparse.Namespace) -> int:
    core = _core(args)
    for group, admin, members in core.store.list_groups():
        print(f"{group.name}\tadmin {admin}\t{members} member(s)")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def cmd_plan_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    for name, plan in settings.plans.items():
        features = ",".join(f for f in ("imap", "smtp", "webdav", "caldav") if plan.allows(f)) or "-"
        print(f"{name}\tmail {_size(plan.mail_bytes)}\tdocuments {_size(plan.documents_bytes)}\t"
              f"calendar+contacts {_size(plan.calendar_bytes)}\tgroups {plan.max_groups}\t"
              f"members {plan.max_members}\tfeatures {features}")
    return 0


def cmd_plan_set(args: argparse.Namespace) -> int:
    core = _core(args)
    core.quota.plan(args.plan)
    account = core.store.update_account(args.login, plan=args.plan)
    print(f"{account.login} is now on plan {args.plan}")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kantoor", description="Kantoor groupware server")
    parser.add_argument("--config", help="TOML settings file (default: ./kantoor.toml if present)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(parent: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int],
            help: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help)
        p.set_defaults(func=func)
        return p

    add(sub, "serve", cmd_serve, "run every listener (IMAP, SMTP, HTTP) in this process")

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    add(db, "upgrade", cmd_db_upgrade, "apply pending schema migrations")

    user = sub.add_parser("user", help="accounts").add_subparsers(dest="user_command", required=True)
    p = add(user, "add", cmd_user_add, "create an account")
    p.add_argument("login", help="the account's primary e-mail address")
    p.add_argument("--plan")
    p.add_argument("--role", choices=("user", "org_admin", "admin"), default="user")
    p.add_argument("--first-name")
    p.add_argument("--last-name")
    for q in (p, add(user, "passwd", cmd_user_passwd, "set an account's password")):
        q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        q.add_argument("--generate", action="store_true", help="generate a password and print it")
    user._name_parser_map["passwd"].add_argument("login")
    add(user, "list", cmd_user_list, "list accounts")
    p = add(user, "disable", cmd_user_disable, "disable (or with --enable, re-enable) an account")
    p.add_argument("login")
    p.add_argument("--enable", action="store_true")
    p = add(user, "delete", cmd_user_delete, "delete an account and all of its data")
    p.add_argument("login")
    p.add_argument("--yes", action="store_true", help="confirm")

    domain = sub.add_parser("domain", help="mail domains").add_subparsers(dest="domain_command", required=True)
    p = add(domain, "add", cmd_domain_add, "serve mail for a domain")
    p.add_argument("domain")
    p.add_argument("--owner", help="login of the organisation administrator who owns it")
    add(domain, "list", cmd_domain_list, "list mail domains")
    p = add(domain, "dns", cmd_domain_dns, "print the DNS records (MX, SPF, DKIM, DMARC) to publish")
    p.add_argument("domain")

    queue = sub.add_parser("queue", help="outbound mail queue").add_subparsers(dest="queue_command", required=True)
    p = add(queue, "list", cmd_queue_list, "list queued messages")
    p.add_argument("--all", action="store_true", help="also delivered and failed messages")
    p = add(queue, "retry", cmd_queue_retry, "try queued messages again now")
    p.add_argument("ids", nargs="*", type=int, help="queue ids (see queue list); or --all")
    p.add_argument("--all", action="store_true", help="every queued message")
    p = add(queue, "delete", cmd_queue_delete, "remove messages from the queue without delivering them")
    p.add_argument("ids", nargs="+", type=int)

    group = sub.add_parser("group", help="groups").add_subparsers(dest="group_command", required=True)
    p = add(group, "create", cmd_group_create, "create a group")
    p.add_argument("name")
    p.add_argument("admin", help="login of the group's administrator")
    p = add(group, "add-member", cmd_group_add_member, "add a member")
    p.add_argument("group")
    p.add_argument("login")
    p.add_argument("--write", action="store_true", help="allow the member to change the group's data")
    p = add(group, "remove-member", cmd_group_remove_member, "remove a member")
    p.add_argument("group")
    p.add_argument("login")
    add(group, "list", cmd_group_list, "list groups")

    plan = sub.add_parser("plan", help="subscription plans").add_subparsers(dest="plan_command", required=True)
    add(plan, "list", cmd_plan_list, "list plans")
    p = add(plan, "set", cmd_plan_set, "move an account to a plan")
    p.add_argument("login")
    p.add_argument("plan")

    from kantoor.cli.share import register as register_share
    register_share(sub, add)
    return parser


def main(argv: list[str] | None = None) -> int:
    from kantoor.quota import PlanNotFound
    from kantoor.storage import StorageError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CommandError, ConfigError, StorageError, PlanNotFound, ValueError, OSError) as exc:
        print(f"kantoor: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
