"""The one typed settings object, read from TOML with ``KANTOOR_*`` overrides.

Every value has an embedded default so ``kantoor serve`` needs no file at all.
Sections map to dataclasses; an environment variable
``KANTOOR_<SECTION>_<KEY>`` (e.g. ``KANTOOR_PORTS_IMAP=1143``) overrides the
file. Validation happens once, at load: a bad value raises ``ConfigError``
naming the key, and start-up stops there.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

# Plan feature flags, and the per-tool capacities every plan defines. "calendar"
# capacity covers calendars and address books together (PRODUCT.md).
FEATURES = ("imap", "smtp", "webdav", "caldav")
TOOLS = ("mail", "documents", "calendar")

MiB = 1024 * 1024
GiB = 1024 * MiB


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    hostname: str = "localhost"  # name the server announces (SMTP banner, URLs, certificate)
    mail_domain: str = "localhost"  # first local mail domain; the first admin is admin@<mail_domain>
    worker_threads: int = 16  # threads for blocking work (SQL, blobs, hashing), per process
    # Server processes sharing the listening ports (each new connection goes to the one
    # serving the fewest, kantoor.accept_balance), so more than one CPU core serves: 0 means one per core.
    processes: int = 1


@dataclass
class PortSettings:
    # Unprivileged defaults so the embedded server runs without root.
    http: int = 8080
    https: int = 8443
    imap: int = 1143  # plain + STARTTLS
    imaps: int = 1993  # implicit TLS
    smtp: int = 2525  # MX (inbound), STARTTLS offered
    submission: int = 1587  # STARTTLS submission
    submissions: int = 1465  # implicit TLS submission


@dataclass
class StorageSettings:
    data_dir: str = "./kantoor-data"
    # Empty means SQLite at <data_dir>/kantoor.sqlite3.
    database_url: str = ""


@dataclass
class TLSSettings:
    # Empty means a self-signed pair generated in <data_dir>/tls/ at first start.
    certificate: str = ""
    private_key: str = ""


@dataclass
class LimitSettings:
    max_message_bytes: int = 50 * MiB  # SMTP SIZE and IMAP APPEND
    max_dav_body_bytes: int = 10 * MiB  # one calendar object / vCard
    max_upload_bytes: int = 10 * GiB  # one WebDAV file
    imap_idle_timeout_seconds: int = 30 * 60
    smtp_timeout_seconds: int = 300
    http_timeout_seconds: int = 300
    # More Received: header fields than this: a mail loop, refused with 554 5.4.6 (RFC 5321 section 6.3
    # recommends a threshold of at least 100).
    max_received_headers: int = 100
    # SMTP sessions (MX and submission together) one client address may have open at once, per server process;
    # IPv6 clients count per /64 (kantoor.smtpd.connection_limits).
    smtp_connections_per_ip: int = 50
    # Error replies in one SMTP session (since its last accepted message) after which each further one is
    # followed by a pause, and after which the session ends with 421; commands that move no mail (NOOP, RSET,
    # VRFY, HELP, EHLO) past the junk limit count as errors. Postfix's defaults.
    smtp_soft_error_limit: int = 10
    smtp_hard_error_limit: int = 20
    smtp_error_delay_seconds: float = 1.0
    smtp_junk_command_limit: int = 100


@dataclass
class AuthSettings:
    # Failed logins allowed per account and per client address inside the window
    # before further attempts are refused without checking the password.
    max_failures: int = 10
    failure_window_seconds: int = 900
    failure_delay_seconds: float = 1.0  # added (asynchronously) after a failed login
    # How long a verified login is remembered for clients that authenticate every
    # request (HTTP Basic); the account is re-read each time, so a password change
    # or a disabled account still takes effect at once.
    login_cache_seconds: float = 60.0
    allow_plaintext_on_loopback: bool = True


@dataclass
class PlanSettings:
    title: str = ""
    mail_bytes: int = 1 * GiB
    documents_bytes: int = 1 * GiB
    calendar_bytes: int = 100 * MiB
    max_groups: int = 1
    max_members: int = 5
    imap: bool = False
    smtp: bool = False
    webdav: bool = False
    caldav: bool = False

    def capacity(self, tool: str) -> int:
        return int(getattr(self, f"{tool}_bytes"))

    def allows(self, feature: str) -> bool:
        return bool(getattr(self, feature))


def default_plans() -> dict[str, PlanSettings]:
    return {
        "free": PlanSettings(
            title="Free", mail_bytes=1 * GiB, documents_bytes=1 * GiB,
            calendar_bytes=100 * MiB, max_groups=1, max_members=5,
            # As in the FAQ: fetching mail with another program and mounting the
            # drive are paid functions; calendar/contact sync is free.
            imap=False, smtp=False, webdav=False, caldav=True,
        ),
        "standard": PlanSettings(
            title="Standard", mail_bytes=10 * GiB, documents_bytes=10 * GiB,
            calendar_bytes=1 * GiB, max_groups=10, max_members=50,
            imap=True, smtp=True, webdav=True, caldav=True,
        ),
        "professional": PlanSettings(
            title="Professional", mail_bytes=50 * GiB, documents_bytes=100 * GiB,
            calendar_bytes=5 * GiB, max_groups=100, max_members=500,
            imap=True, smtp=True, webdav=True, caldav=True,
        ),
    }


@dataclass
class AccountSettings:
    default_plan: str = "free"
    admin_plan: str = "professional"
    inactive_free_account_days: int = 210


@dataclass
class DeliverySettings:
    # "example.net=127.0.0.1:2526, other.org=mx.other.org" — fixed MX hosts per domain, looked up
    # before DNS (tests point a domain at a local fake MX; also a way to route one domain by hand).
    static_mx: str = ""
    # Name servers for MX lookups ("127.0.0.1:5353, 10.0.0.1"); empty = the system resolver.
    dns_nameservers: str = ""
    # Send everything remote through this relay ("host:port") instead of MX lookups; with
    # credentials when given (AUTH after STARTTLS, or implicit TLS on port 465).
    smarthost: str = ""
    smarthost_login: str = ""
    smarthost_password: str = ""
    retry_base_seconds: float = 300.0  # first retry; doubles per attempt…
    retry_max_seconds: float = 4 * 3600.0  # …up to this
    expire_seconds: float = 5 * 86400.0  # give up (and bounce) after this long in the queue
    poll_seconds: float = 10.0  # how often a worker looks for due messages other processes queued
    lease_seconds: float = 600.0  # a claim older than this is taken over (its worker died)
    connect_timeout_seconds: float = 60.0  # connecting, and waiting for each reply but the one below
    # Sending the message and waiting for the reply to its final "." (RFC 5321 4.5.3.2.6: 10 minutes; a large
    # message on a slow link, or a server that scans it first, would otherwise time out after it was taken, and
    # get the message again on every retry).
    data_timeout_seconds: float = 600.0
    concurrency: int = 10  # messages one process delivers at once
    dkim_selector: str = "kantoor"
    # Messages one account may queue for other servers per hour, and recipients on other servers of those
    # messages (one message to many recipients counts for each); 0 = no limit.
    max_messages_per_hour: int = 200
    max_recipients_per_hour: int = 1000
    # A "delayed" DSN (RFC 3461) goes out once when a message has waited this long.
    delay_notify_seconds: float = 4 * 3600.0
    remote_port: int = 25  # the port of other domains' MX hosts (tests point it at a fake MX)
    # From: of mail the server itself sends (bounces, warnings); empty = postmaster@<mail_domain>.
    server_from: str = ""
    # Mail usage (percent of the plan's capacity) that triggers one "mailbox almost full" mail.
    quota_warning_percent: int = 90
    quota_check_seconds: float = 300.0  # how often usage is checked for that warning
    # iMIP (RFC 6047): mail invitations/cancellations to external attendees of events an account
    # organizes over CalDAV. Clients that schedule by themselves (Thunderbird, Evolution send their
    # own iMIP when the server does not advertise calendar-auto-schedule) would make attendees get
    # two copies; turn this off where those clients dominate. Phones (DAVx5, iOS) rely on the server.
    imip_invitations: bool = True


@dataclass
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    ports: PortSettings = field(default_factory=PortSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    plans: dict[str, PlanSettings] = field(default_factory=default_plans)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir).resolve()

    @property
    def database_url(self) -> str:
        if self.storage.database_url:
            return self.storage.database_url
        return f"sqlite:///{self.data_dir / 'kantoor.sqlite3'}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Settings) if f.name != "plans"}


def _coerce(key: str, value: Any, kind: type) -> Any:
    """Convert a TOML or environment value to the field's type, or fail naming the key."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported setting type")  # pragma: no cover


def _fill(obj: Any, prefix: str, values: Mapping[str, Any]) -> None:
    hints = get_type_hints(type(obj))
    for name, value in values.items():
        key = f"{prefix}.{name}"
        if name not in hints:
            raise ConfigError(f"{key}: unknown setting")
        setattr(obj, name, _coerce(key, value, hints[name]))


def _validate(settings: Settings) -> None:
    for name in dataclasses.fields(PortSettings):
        port = getattr(settings.ports, name.name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"ports.{name.name}: {port} is not a TCP port (0-65535)")
    for section in ("limits",):
        obj = getattr(settings, section)
        for f in dataclasses.fields(obj):
            if getattr(obj, f.name) <= 0:
                raise ConfigError(f"{section}.{f.name}: must be positive")
    for name in ("retry_base_seconds", "retry_max_seconds", "expire_seconds", "poll_seconds", "lease_seconds",
                 "connect_timeout_seconds", "data_timeout_seconds", "concurrency"):
        if getattr(settings.delivery, name) <= 0:
            raise ConfigError(f"delivery.{name}: must be positive")
    for name in ("max_messages_per_hour", "max_recipients_per_hour"):
        if getattr(settings.delivery, name) < 0:
            raise ConfigError(f"delivery.{name}: must not be negative")
    if settings.auth.max_failures < 1:
        raise ConfigError("auth.max_failures: must be at least 1")
    if not 0 <= settings.server.processes <= 64:
        raise ConfigError("server.processes: must be between 0 (one per CPU core) and 64")
    if settings.server.worker_threads < 2:
        raise ConfigError("server.worker_threads: must be at least 2")
    url = settings.storage.database_url
    if url and not (url.startswith("sqlite") or url.startswith("postgresql")):
        raise ConfigError("storage.database_url: only sqlite:// and postgresql+psycopg:// URLs are supported")
    if bool(settings.tls.certificate) != bool(settings.tls.private_key):
        raise ConfigError("tls.certificate: certificate and private_key must be set together")
    if not settings.plans:
        raise ConfigError("plans: at least one plan is required")
    for plan_name, plan in settings.plans.items():
        for tool in TOOLS:
            if plan.capacity(tool) < 0:
                raise ConfigError(f"plans.{plan_name}.{tool}_bytes: must not be negative")
    for key in ("default_plan", "admin_plan"):
        if getattr(settings.accounts, key) not in settings.plans:
            raise ConfigError(
                f"accounts.{key}: no plan named {getattr(settings.accounts, key)!r} "
                f"(plans: {', '.join(sorted(settings.plans))})"
            )


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read settings: embedded defaults, then the TOML file, then the environment.

    ``path`` None means ``./kantoor.toml`` if it exists; an explicit path must exist.
    """
    environ = os.environ if environ is None else environ
    settings = Settings()
    data: dict[str, Any] = {}
    if path is None and Path("kantoor.toml").is_file():
        path = "kantoor.toml"
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: configuration file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None

    for section, values in data.items():
        if section == "plans":
            if not isinstance(values, dict):
                raise ConfigError("plans: expected a table of plans")
            plans: dict[str, PlanSettings] = dict(settings.plans)
            for plan_name, plan_values in values.items():
                if not isinstance(plan_values, dict):
                    raise ConfigError(f"plans.{plan_name}: expected a table")
                plan = dataclasses.replace(plans.get(plan_name, PlanSettings(title=plan_name)))
                _fill(plan, f"plans.{plan_name}", plan_values)
                plans[plan_name] = plan
            settings.plans = plans
            continue
        if section not in _SECTIONS:
            raise ConfigError(f"{section}: unknown section")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a table")
        _fill(getattr(settings, section), section, values)

    for var, value in environ.items():
        if not var.startswith("KANTOOR_"):
            continue
        rest = var[len("KANTOOR_"):].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            continue  # not a settings variable (e.g. KANTOOR_CONFIG)
        name = rest[len(section) + 1:]
        obj = getattr(settings, section)
        hints = get_type_hints(type(obj))
        if name not in hints:
            raise ConfigError(f"{var}: unknown setting {section}.{name}")
        setattr(obj, name, _coerce(f"{var} ({section}.{name})", value, hints[name]))
    _validate(settings)
    return settings

