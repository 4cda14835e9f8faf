"""hwgated.toml: load, validate and resolve the daemon configuration.

The whole file is checked before anything starts: an unknown key, a wrong
type, a missing TLS or PIN file or an unwritable socket directory is a
:class:`ConfigError` naming the file and the dotted key, and ``hwgated`` exits
with status 2. Relative paths are resolved against the config file's
directory, so a test bed's config can be moved as a whole. The schema is
documented in the README (and docs/config-schema.md).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from hwgated.filemodes import UnsafeFile, check_config_file, check_secret_file
from hwgated.hsm.config import TokenConfig, token_problem
from hwgated.pcsc.config import PcscConfig, ShareMode

LOG_LEVELS = ("trace", "debug", "info", "warning", "error")  # trace: every APDU, redacted
LOG_TARGETS = ("auto", "journal", "stderr")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, already phrased for the operator."""


@dataclass(frozen=True)
class ListenerConfig:
    """One socket the daemon binds: a Unix path or a TCP address."""

    unix: Path | None = None
    tcp: str | None = None
    mode: int = 0o660
    group: str | None = None
    role: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    insecure: bool = False

    @property
    def target(self) -> str:
        """The gRPC address this listener binds."""
        return f"unix:{self.unix}" if self.unix is not None else str(self.tcp)

    @property
    def uses_tls(self) -> bool:
        return self.tcp is not None and not self.insecure


@dataclass(frozen=True)
class DaemonSettings:
    log_level: str = "info"
    grace_period: float = 5.0
    max_message_bytes: int = 1 << 20
    metrics: str | None = None
    log_target: str = "auto"  # auto: journald when stderr is the journal stream
    event_loop: str = "auto"  # auto: uvloop when installed, else asyncio's (ops.eventloop)


@dataclass(frozen=True)
class RoleConfig:
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class IdentityRule:
    """Maps an mTLS client certificate (SAN URI or subject CN), or a local peer's
    uid or gid (SO_PEERCRED, on Unix listeners), to a role."""

    role: str
    san_uri: str | None = None
    cn: str | None = None
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class ResourceRule:
    """Which roles may use keys (or readers) whose name matches ``pattern``.

    ``create`` (key rules only) lists the roles that may create new persistent
    keys with a matching label (GenerateKey, persistent Derive): a separate
    grant, empty by default, so a role that may use keys never mints names.
    """

    pattern: str
    roles: tuple[str, ...]
    create: tuple[str, ...] = ()


WRAP_OPERATIONS = ("wrap", "unwrap", "rewrap")


@dataclass(frozen=True)
class WrapRule:
    """Which roles may wrap which keys under which wrapping keys ([[policy.wrap]]).

    ``keys`` (fnmatch on labels) are the keys the rule marks for escrow: wrapped
    out by WrapKey, or made by UnwrapKey; ``wrapping_keys`` the keys they may be
    wrapped under; ``operations`` some of ``wrap``, ``unwrap``, ``rewrap``
    (RewrapForPeer, which consults no ``keys``: the escrowed key is only a blob).
    """

    keys: tuple[str, ...]
    wrapping_keys: tuple[str, ...]
    roles: tuple[str, ...]
    operations: tuple[str, ...]


@dataclass(frozen=True)
class PolicyConfig:
    roles: Mapping[str, RoleConfig] = field(default_factory=dict)
    identities: tuple[IdentityRule, ...] = ()
    keys: tuple[ResourceRule, ...] = ()
    readers: tuple[ResourceRule, ...] = ()
    # Roles that may send security APDUs (VERIFY, GENERAL AUTHENTICATE, ...) via Transmit.
    transmit_security: tuple[str, ...] = ()
    # Key wrapping and escrow; no rule = nothing is ever wrapped.
    wrap: tuple[WrapRule, ...] = ()


@dataclass(frozen=True)
class AuditConfig:
    file: Path | None = None  # None: journald under systemd, else stderr
    to_stderr: bool = False


@dataclass(frozen=True)
class LimitsConfig:
    verify_pin_per_minute: int = 10
    max_sessions_per_identity: int = 4
    max_streams_per_connection: int = 100
    # A connection must finish its TLS handshake and send the HTTP/2 preface this fast;
    # grpc core's default is 120 s, enough to hold thousands of idle sockets open.
    handshake_timeout: float = 10.0
    # Open connections per listener (grpc.max_allowed_incoming_connections); more are
    # accepted and closed at once. The unit's LimitNOFILE is 65536.
    max_connections_per_listener: int = 1024


@dataclass(frozen=True)
class Config:
    path: Path | None
    daemon: DaemonSettings
    listeners: tuple[ListenerConfig, ...]
    pcsc: PcscConfig
    tokens: tuple[TokenConfig, ...]
    policy: PolicyConfig
    audit: AuditConfig
    limits: LimitsConfig


class _Table:
    """A TOML table being consumed key by key, so leftovers are unknown keys."""

    def __init__(self, data: Mapping[str, Any], where: str, source: str, base: Path) -> None:
        self._data = dict(data)
        self.where = where
        self.source = source
        self.base = base

    def error(self, key: str | None, message: str) -> ConfigError:
        name = f"{self.where}.{key}" if key and self.where else (key or self.where or "(top)")
        return ConfigError(f"{self.source}: {name}: {message}")

    def take(self, key: str, kind: type[T] | tuple[type, ...], default: Any = None) -> Any:
        if key not in self._data:
            return default
        value = self._data.pop(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; TOML keeps them apart, so do we.
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"expected {_kind_name(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            raise self.error(key, f"expected {_kind_name(kinds)}, got {_toml_type(value)}")
        return value

    def take_number(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = float(self.take(key, (int, float), default))
        if not math.isfinite(value):
            raise self.error(key, "must be a finite number")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}")
        return value

    def take_int(self, key: str, default: int, minimum: int = 1) -> int:
        value = int(self.take(key, int, default))
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}")
        return value

    def take_strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.take(key, list, None)
        if value is None:
            return default
        if not all(isinstance(item, str) for item in value):
            raise self.error(key, "expected a list of strings")
        return tuple(value)

    def take_path(self, key: str) -> Path | None:
        value = self.take(key, str)
        if value is None:
            return None
        if "\x00" in value:
            raise self.error(key, "a path may not contain a NUL byte")
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def take_table(self, key: str) -> _Table:
        value = self.take(key, dict, {})
        return self.child(value, key)

    def take_tables(self, key: str) -> list[_Table]:
        value = self.take(key, list, [])
        tables = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.error(f"{key}[{index}]", "expected a table")
            tables.append(self.child(item, f"{key}[{index}]"))
        return tables

    def child(self, data: Mapping[str, Any], key: str) -> _Table:
        where = f"{self.where}.{key}" if self.where else key
        return _Table(data, where, self.source, self.base)

    def names(self) -> list[str]:
        return list(self._data)

    def done(self) -> None:
        if self._data:
            unknown = ", ".join(sorted(self._data))
            name = self.where or "top level"
            raise ConfigError(f"{self.source}: {name}: unknown key(s): {unknown}")


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _toml_type(value: object) -> str:
    return _kind_name((type(value),))


def load_config(path: Path | str) -> Config:
    """Read and validate *path*; raises :class:`ConfigError` on any problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    config = parse_config(raw, source=str(path), base=path.resolve().parent, path=path)
    _check_trusted_files(path, config)
    return config


def _check_trusted_files(path: Path, config: Config) -> None:
    """The config file and the secrets it names pass hwgated.filemodes' rules."""
    try:
        check_config_file(path)
        # A missing file is the schema's concern (or a token's own problem), not this check's.
        for token in config.tokens:
            if token.pin_file is not None and Path(token.pin_file).exists():
                check_secret_file(Path(token.pin_file), "pin_file")
        for listener in config.listeners:
            if listener.tls_key is not None and listener.tls_key.exists():
                check_secret_file(listener.tls_key, "tls_key")
    except UnsafeFile as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_config(
    raw: Mapping[str, Any],
    *,
    source: str = "<config>",
    base: Path | None = None,
    path: Path | None = None,
) -> Config:
    """Validate an already-parsed TOML document (used by tests and the fuzzer)."""
    top = _Table(raw, "", source, base or Path.cwd())
    daemon = _daemon(top.take_table("daemon"))
    listeners = tuple(_listener(t) for t in top.take_tables("listen"))
    if not listeners:
        raise top.error("listen", "at least one [[listen]] table is required")
    pcsc = _pcsc(top.take_table("pcsc"))
    hsm = top.take_table("hsm")
    tokens = tuple(_token(t) for t in hsm.take_tables("token"))
    hsm.done()
    names = [t.name for t in tokens]
    if len(set(names)) != len(names):
        raise hsm.error("token", "token names must be unique")
    policy = _policy(top.take_table("policy"))
    audit = _audit(top.take_table("audit"))
    limits = _limits(top.take_table("limits"))
    top.done()
    _check_roles(listeners, policy, top)
    return Config(path, daemon, listeners, pcsc, tokens, policy, audit, limits)


def _daemon(t: _Table) -> DaemonSettings:
    level = t.take("log_level", str, "info").lower()
    if level not in LOG_LEVELS:
        raise t.error("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    settings = DaemonSettings(
        log_level=level,
        grace_period=t.take_number("grace_period", 5.0),
        max_message_bytes=t.take_int("max_message_bytes", 1 << 20, minimum=1024),
        metrics=t.take("metrics", str),
        log_target=t.take("log_target", str, "auto"),
        event_loop=t.take("event_loop", str, "auto"),
    )
    if settings.log_target not in LOG_TARGETS:
        raise t.error("log_target", f"must be one of {', '.join(LOG_TARGETS)}")
    if settings.event_loop not in EVENT_LOOPS:
        raise t.error("event_loop", f"must be one of {', '.join(EVENT_LOOPS)}")
    if settings.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        # Here, not at the loop's start: --check-config tells it, and no traceback.
        raise t.error("event_loop", "is uvloop, but uvloop is not installed")
    if settings.max_message_bytes > 2**31 - 1:  # gRPC channel options are int32
        raise t.error("max_message_bytes", "must be < 2**31")
    if settings.metrics is not None:
        _split_host_port(settings.metrics, t, "metrics")
    t.done()
    return settings


def _listener(t: _Table) -> ListenerConfig:
    unix = t.take_path("unix")
    tcp = t.take("tcp", str)
    if (unix is None) == (tcp is None):
        raise t.error(None, "set exactly one of 'unix' or 'tcp'")
    mode_text = t.take("mode", str, "0660")
    try:
        mode = int(mode_text, 8)
    except ValueError:
        raise t.error("mode", f"not an octal mode: {mode_text!r}") from None
    if not 0 <= mode <= 0o777:
        raise t.error("mode", f"not a file mode: {mode_text!r}")
    listener = ListenerConfig(
        unix=unix,
        tcp=tcp,
        mode=mode,
        group=t.take("group", str),
        role=t.take("role", str),
        tls_cert=t.take_path("tls_cert"),
        tls_key=t.take_path("tls_key"),
        client_ca=t.take_path("client_ca"),
        insecure=t.take("insecure", bool, False),
    )
    t.done()
    if unix is not None:
        _check_unix_listener(listener, t)
    else:
        _check_tcp_listener(listener, t)
    return listener


def _check_unix_listener(listener: ListenerConfig, t: _Table) -> None:
    assert listener.unix is not None
    if listener.tls_cert or listener.tls_key or listener.client_ca or listener.insecure:
        raise t.error(None, "TLS settings and 'insecure' apply to tcp listeners only")
    if listener.role is None:
        raise t.error("role", "a unix listener needs a role")
    parent = listener.unix.parent
    if not parent.is_dir():
        # The daemon creates one missing level (systemd's RuntimeDirectory does the same).
        if not parent.parent.is_dir() or not os.access(parent.parent, os.W_OK | os.X_OK):
            raise t.error("unix", f"socket directory {parent} does not exist and cannot be made")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise t.error("unix", f"socket directory {parent} is not writable")
    if listener.group is not None:
        import grp

        try:
            grp.getgrnam(listener.group)
        except (KeyError, ValueError):  # ValueError: a NUL in the name
            raise t.error("group", f"no such group: {listener.group}") from None


def _check_tcp_listener(listener: ListenerConfig, t: _Table) -> None:
    assert listener.tcp is not None
    host, _ = _split_host_port(listener.tcp, t, "tcp")
    if listener.group is not None:
        raise t.error("group", "applies to unix listeners only")
    if listener.insecure:
        if not _is_loopback(host):
            raise t.error("insecure", f"plain TCP is allowed only on loopback, not {host}")
        if listener.role is None:
            raise t.error("role", "an insecure tcp listener needs a role")
        return
    if listener.role is not None:
        raise t.error("role", "with TLS the role comes from the client certificate")
    for key in ("tls_cert", "tls_key", "client_ca"):
        file = getattr(listener, key)
        if file is None:
            raise t.error(key, "required for a TLS listener (or set insecure = true on loopback)")
        if not file.is_file():
            raise t.error(key, f"no such file: {file}")
        if not os.access(file, os.R_OK):
            raise t.error(key, f"not readable: {file}")


def _split_host_port(text: str, t: _Table, key: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    digits = port_text.isascii() and port_text.isdigit()  # "²".isdigit() is True
    if not sep or not host or not digits or not 0 < int(port_text) < 65536:
        raise t.error(key, f"expected host:port, got {text!r}")
    return host, int(port_text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _pcsc(t: _Table) -> PcscConfig:
    cfg = PcscConfig(
        readers=t.take_strings("readers", ("*",)),
        max_session_ttl=t.take_number("max_session_ttl", 30.0, minimum=0.1),
        max_apdus_per_transmit=t.take_int("max_apdus_per_transmit", 64),
        journal_size=t.take_int("journal_size", 1024),
        subscriber_queue=t.take_int("subscriber_queue", 256),
        share_mode=_share_mode(t),
    )
    t.done()
    return cfg


def _share_mode(t: _Table) -> ShareMode:
    value = t.take("share_mode", str, ShareMode.EXCLUSIVE.value)
    try:
        return ShareMode(value)
    except ValueError:
        choices = ", ".join(f'"{mode.value}"' for mode in ShareMode)
        raise t.error("share_mode", f"must be one of {choices}, got {value!r}") from None


def _token(t: _Table) -> TokenConfig:
    """One ``[[hsm.token]]``: types here, every other rule in hsm.config.token_problem
    (the one validator, which HsmPool applies too). Paths are resolved after it ran,
    so an empty ``pin_file`` or ``module`` is "must not be empty", not a directory."""
    name = t.take("name", str)
    if name is None:
        raise t.error("name", "required")
    module = t.take("module", str)
    if module is None:
        raise t.error("module", "required")
    env = t.take("env", dict, {})
    if not all(isinstance(v, str) for v in env.values()):
        raise t.error("env", "values must be strings")
    token = TokenConfig(
        name=name,
        module=module,
        token_label=t.take("token_label", str),
        token_serial=t.take("token_serial", str),
        pin_file=t.take("pin_file", str),
        pin_env=t.take("pin_env", str),
        pin_credential=t.take("pin_credential", str),
        workers=t.take("workers", int, 2),
        op_timeout=_seconds(t, "op_timeout", 10.0),
        describe_ttl=_seconds(t, "describe_ttl", 30.0),
        env=dict(env),
    )
    t.done()
    problem = token_problem(token)
    if problem is not None:
        raise t.error(*problem)
    pin_file = _resolve_path(t, "pin_file", token.pin_file) if token.pin_file is not None else None
    token = replace(
        token,
        module=_resolve_path(t, "module", token.module),
        pin_file=pin_file,
        env={k: _resolve_env_path(v, t.base) for k, v in env.items()},
    )
    if pin_file is not None and not Path(pin_file).is_file():
        raise t.error("pin_file", f"no such file: {pin_file}")
    return token


def _seconds(t: _Table, key: str, default: float) -> float:
    """A number of seconds; its range is token_problem's business, its size ours."""
    value = t.take(key, (int, float), default)
    try:
        return float(value)
    except OverflowError:  # a TOML integer with hundreds of digits
        raise t.error(key, "number too large") from None


def _resolve_path(t: _Table, key: str, value: str) -> str:
    """A path from the token table: ``~`` expanded, relative to the config's directory."""
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "~nosuchuser/..."
        raise t.error(key, f"cannot expand {value!r}") from None
    return str(path if path.is_absolute() else t.base / path)


def _resolve_env_path(value: str, base: Path) -> str:
    """Relative values that name an existing file next to the config become absolute."""
    candidate = base / value
    return str(candidate) if not os.path.isabs(value) and candidate.exists() else value


def _policy(t: _Table) -> PolicyConfig:
    roles_table = t.take_table("roles")
    roles: dict[str, RoleConfig] = {}
    for name in roles_table.names():
        role = roles_table.take_table(name)
        roles[name] = RoleConfig(allow=role.take_strings("allow"))
        role.done()
    roles_table.done()
    identities = []
    for it in t.take_tables("identity"):
        rule = IdentityRule(
            role=it.take("role", str),
            san_uri=it.take("san_uri", str),
            cn=it.take("cn", str),
            uid=it.take("uid", int),
            gid=it.take("gid", int),
        )
        it.done()
        if not rule.role:
            raise it.error("role", "required")
        matchers = (rule.san_uri, rule.cn, rule.uid, rule.gid)
        if sum(m is not None for m in matchers) != 1:
            raise it.error(None, "set exactly one of 'san_uri', 'cn', 'uid' or 'gid'")
        for key in ("uid", "gid"):
            value = getattr(rule, key)
            if value is not None and not 0 <= value < 2**32 - 1:
                raise it.error(key, "must be a uid/gid (0 .. 4294967294)")
        identities.append(rule)
    policy = PolicyConfig(
        roles=roles,
        identities=tuple(identities),
        keys=tuple(_resource_rule(r, creatable=True) for r in t.take_tables("keys")),
        readers=tuple(_resource_rule(r) for r in t.take_tables("readers")),
        transmit_security=t.take_strings("transmit_security"),
        wrap=tuple(_wrap_rule(r) for r in t.take_tables("wrap")),
    )
    t.done()
    return policy


def _wrap_rule(t: _Table) -> WrapRule:
    rule = WrapRule(
        keys=t.take_strings("keys"),
        wrapping_keys=t.take_strings("wrapping_keys"),
        roles=t.take_strings("roles"),
        operations=t.take_strings("operations"),
    )
    t.done()
    if not rule.operations:
        raise t.error("operations", f"required: some of {list(WRAP_OPERATIONS)}")
    unknown = [op for op in rule.operations if op not in WRAP_OPERATIONS]
    if unknown:
        raise t.error("operations", f"unknown operation {unknown[0]!r}")
    if not rule.wrapping_keys:
        raise t.error("wrapping_keys", "required")
    if not rule.keys and set(rule.operations) != {"rewrap"}:
        raise t.error("keys", "required (only a rewrap-only rule names no keys)")
    return rule


def _resource_rule(t: _Table, creatable: bool = False) -> ResourceRule:
    pattern = t.take("pattern", str)
    if not pattern:
        raise t.error("pattern", "required")
    create = t.take_strings("create") if creatable else ()
    if create and pattern.startswith("derive-value:"):
        raise t.error("create", "a derive-value: rule grants no key creation")
    rule = ResourceRule(pattern=pattern, roles=t.take_strings("roles"), create=create)
    t.done()
    outside = [role for role in create if role not in rule.roles]
    if outside:
        # A role that could create keys it may not use could probe hidden labels (KEY_EXISTS).
        raise t.error("create", f"role {outside[0]!r} must also be listed in 'roles'")
    return rule


def _audit(t: _Table) -> AuditConfig:
    file = t.take("file", str)
    t.done()
    if file == "-":
        return AuditConfig(file=None, to_stderr=True)
    if file is None:
        return AuditConfig()
    path = Path(file).expanduser()
    return AuditConfig(file=path if path.is_absolute() else t.base / path)


def _limits(t: _Table) -> LimitsConfig:
    limits = LimitsConfig(
        verify_pin_per_minute=t.take_int("verify_pin_per_minute", 10),
        max_sessions_per_identity=t.take_int("max_sessions_per_identity", 4),
        max_streams_per_connection=t.take_int("max_streams_per_connection", 100),
        **_connection_limits(t),
    )
    t.done()
    return limits


def _connection_limits(t: _Table) -> dict[str, Any]:
    """The transport limits of [limits]: handshake deadline and connection cap."""
    timeout = t.take_number("handshake_timeout", 10.0, minimum=0.1)
    if timeout > 3600:
        raise t.error("handshake_timeout", "must be <= 3600 seconds")
    cap = t.take_int("max_connections_per_listener", 1024)
    if cap > 2**31 - 1:  # gRPC channel options are int32
        raise t.error("max_connections_per_listener", "must be < 2**31")
    return {"handshake_timeout": timeout, "max_connections_per_listener": cap}


def _check_roles(listeners: tuple[ListenerConfig, ...], policy: PolicyConfig, top: _Table) -> None:
    """Every role named anywhere must be defined under [policy.roles] (when any are)."""
    if not policy.roles:
        return
    named: list[tuple[str, str]] = [
        (f"listen ({lst.target})", lst.role) for lst in listeners if lst.role
    ]
    named += [("policy.identity", rule.role) for rule in policy.identities]
    named += [("policy.transmit_security", role) for role in policy.transmit_security]
    for rule in (*policy.keys, *policy.readers):
        named += [(f"policy rule {rule.pattern!r}", role) for role in (*rule.roles, *rule.create)]
    named += [("policy.wrap", role) for wrap in policy.wrap for role in wrap.roles]
    for where, role in named:
        if role not in policy.roles:
            raise ConfigError(
                f"{top.source}: {where}: role {role!r} is not defined in [policy.roles]"
            )
