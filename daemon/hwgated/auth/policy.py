"""Authorization policy: roles → RPCs, and per key / per reader which roles may use it.

Default deny: a role not defined, an RPC no glob of the role matches, a key or
reader no rule matches — all refused with PERMISSION_DENIED / POLICY_DENIED and
metadata naming the rule class (``rpc``, ``key`` or ``reader``), never the
policy itself. The method check runs in the server interceptor; key and reader
checks run in the servicers, where the resource is known. The daemon holds the
current policy in one place and swaps it atomically on SIGHUP.
"""

from __future__ import annotations

from collections.abc import Iterable

from hwgated.auth.identity import Caller, current_caller
from hwgated.config import PolicyConfig, ResourceRule
from hwgated.errors import PolicyDenied
from hwgated.patterns import any_match, glob_match

# RPCs every authenticated caller may use: health checks and server reflection
# reveal nothing a caller could not learn from the public .proto files.
ALWAYS_ALLOWED = (
    "/grpc.health.v1.Health/*",
    "/grpc.reflection.v1alpha.ServerReflection/*",
    "/grpc.reflection.v1.ServerReflection/*",
)


def _method_name(method: str) -> str:
    """'/hwgate.v1.CardService/ListReaders' → 'hwgate.v1.CardService/ListReaders'."""
    return method.lstrip("/")


def _matches(patterns: Iterable[str], value: str) -> bool:
    return any_match(value, patterns)


class Policy:
    """An immutable, validated policy; cheap to evaluate on every call."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self._allow = {
            role: tuple(_method_name(p) for p in rc.allow) for role, rc in config.roles.items()
        }
        # (role, method) -> allowed: every call asks, the answer never changes (a reload
        # makes a new Policy). Methods are the server's registered ones, roles the
        # configured ones, so the table stays small.
        self._method_answers: dict[tuple[str, str], bool] = {}

    def allows_method(self, role: str, method: str) -> bool:
        answer = self._method_answers.get((role, method))
        if answer is None:
            answer = _matches(ALWAYS_ALLOWED, method) or _matches(
                self._allow.get(role, ()), _method_name(method)
            )
            if len(self._method_answers) < 4096:  # a caller's unknown names cannot grow it
                self._method_answers[(role, method)] = answer
        return answer

    @staticmethod
    def _resource_allowed(rules: tuple[ResourceRule, ...], role: str, name: str) -> bool:
        # Rules are read in order; the first whose pattern matches decides.
        for rule in rules:
            if glob_match(name, rule.pattern):
                return role in rule.roles
        return False

    def allows_key(self, role: str, key: str) -> bool:
        return self._resource_allowed(self.config.keys, role, key)

    def allows_create(self, role: str, label: str) -> bool:
        """May *role* create a new persistent key called *label*?

        The first key rule whose pattern matches the label decides, as for use,
        but by its ``create`` roles (empty unless granted): the right to use
        keys called ``signer-*`` is not the right to mint more of them.
        """
        for rule in self.config.keys:
            if glob_match(label, rule.pattern):
                return role in rule.create
        return False

    def allows_reader(self, role: str, reader: str) -> bool:
        return self._resource_allowed(self.config.readers, role, reader)

    def allows_transmit_security(self, role: str) -> bool:
        """May *role* send security APDUs through Transmit? Named roles only, no globs."""
        return role in self.config.transmit_security

    def check_method(self, caller: Caller, method: str) -> None:
        if not self.allows_method(caller.role, method):
            raise PolicyDenied(
                f"role {caller.role!r} may not call {_method_name(method)}", rule="rpc"
            )

    def check_key(self, key: str, caller: Caller | None = None) -> None:
        caller = caller or current_caller()
        if not self.allows_key(caller.role, key):
            raise PolicyDenied(f"role {caller.role!r} may not use key {key!r}", rule="key")

    def check_create(self, label: str, caller: Caller | None = None) -> None:
        caller = caller or current_caller()
        if not self.allows_create(caller.role, label):
            raise PolicyDenied(
                f"role {caller.role!r} may not create keys labelled {label!r}", rule="create"
            )

    def check_reader(self, reader: str, caller: Caller | None = None) -> None:
        caller = caller or current_caller()
        if not self.allows_reader(caller.role, reader):
            raise PolicyDenied(f"role {caller.role!r} may not use reader {reader!r}", rule="reader")


class PolicyHolder:
    """The daemon's current policy; replaced as a whole, never edited in place."""

    def __init__(self, policy: Policy) -> None:
        self.current = policy

    def replace(self, policy: Policy) -> None:
        self.current = policy
