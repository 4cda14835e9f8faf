"""Which token, which key, and may this caller use it: the HsmService's authorization.

Policy names keys by label, but a client may name a key by id or pkcs11: URI,
so every reference is first resolved to the one key it selects (the pool
caches that) and the policy is asked about that key's label. The operation then
runs on the resolved key's exact label+id+class, so the key that was
authorized is the key that is used.

Returning a derived key's value is a separate permission, because a value
that leaves the HSM can no longer be audited: a ``[[policy.keys]]`` rule whose
pattern starts with ``derive-value:`` grants it, e.g. ``pattern =
"derive-value:ecdh-*"`` lets its roles receive the value of keys derived from
base keys labelled ``ecdh-*``. Only such rules are consulted (first match
decides); a plain ``"*"`` rule never grants it, so the default is deny.

A key the caller may not use does not exist for that caller: a reference to it
(by label, id or URI) gets exactly the answer a reference to no key at all
gets (NOT_FOUND / KEY_NOT_FOUND, a message quoting only the caller's own
reference, the same metadata), as cloud KMSs answer. Otherwise a caller could
enumerate ids to learn which keys exist and what they are called. The audit
record still says POLICY_DENIED, for the administrator.

Creating a persistent key is a third grant (``create`` roles on a key rule,
see ``Policy.allows_create``): using keys called ``signer-*`` does not let a
role fill the token with new ``signer-*`` keys that other rules then match.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from hwgate.v1 import hsm_pb2
from hwgated import errors
from hwgated.api import hsm_convert
from hwgated.auth.identity import current_caller
from hwgated.auth.policy import PolicyHolder
from hwgated.hsm import HsmPool, HsmUnavailable, KeyClass, KeyInfo, KeyNotFound, KeyRef
from hwgated.patterns import glob_match

DERIVE_VALUE_PREFIX = "derive-value:"
SIGN_CLASSES = (KeyClass.PRIVATE, KeyClass.SECRET)
ANY_CLASSES = (KeyClass.PRIVATE, KeyClass.SECRET, KeyClass.PUBLIC)


class HiddenKey(KeyNotFound):
    """A reference the caller may not use, answered exactly like a missing key."""

    audit_outcome = "POLICY_DENIED"


def unusable(reference: str, hidden: bool) -> KeyNotFound:
    """The one answer for "no such key" and "a key you may not see" (same text, same class
    to the client); *reference* is the caller's own text, never a resolved label."""
    cls = HiddenKey if hidden else KeyNotFound
    return cls(f"no key you may use matches {reference}")


@dataclass(frozen=True)
class ResolvedKey:
    """A key the caller may use: its token (configured name), pool and description."""

    token: str
    pool: HsmPool
    info: KeyInfo

    @property
    def ref(self) -> KeyRef:
        """Selects exactly this object (label + id + class)."""
        return self.info.ref

    @property
    def label(self) -> str:
        return self.info.label

    @property
    def uri(self) -> str:
        return hsm_convert.key_uri(self.info, self.pool.config.token_label)

    def message(self) -> hsm_pb2.KeyInfo:
        return hsm_convert.key_info(self.info, self.token, self.pool.config.token_label)


@contextmanager
def annotated(token: str, key: str | None = None) -> Iterator[None]:
    """Name the token (pool down) or the key (missing, exists) in errors raised inside.

    The HSM layer below does not know the configured token name nor the
    caller's reference, so those two fields are added here, on the way out.
    """
    try:
        yield
    except HsmUnavailable as exc:  # and HsmLoginFailed
        exc.fields["token"] = token
        raise
    except (KeyNotFound, errors.KeyExists) as exc:
        if key is not None:
            exc.fields["key"] = key
        raise


class KeyAccess:
    """Token selection, key resolution and per-key policy for one servicer."""

    def __init__(self, pools: Mapping[str, HsmPool], policy: PolicyHolder) -> None:
        self._pools = pools
        self._policy = policy

    def pool(self, token: str, field: str = "token") -> tuple[str, HsmPool]:
        """The pool of a configured token name; empty = the only configured token
        (TOKEN_AMBIGUOUS when there are several: choosing for the caller would sign
        or generate with a key the caller did not mean)."""
        if not self._pools:
            raise HsmUnavailable("no HSM token is configured")
        if not token:
            if len(self._pools) > 1:
                names = ",".join(self._pools)
                raise errors.TokenAmbiguous(
                    f"{len(self._pools)} tokens are configured ({names}): name one",
                    field=field,
                    tokens=names,
                )
            name = next(iter(self._pools))
            return name, self._pools[name]
        pool = self._pools.get(token)
        if pool is None:
            raise errors.InvalidArgument(f"no token named {token!r} is configured", field=field)
        return token, pool

    def pools(self, token: str = "") -> list[tuple[str, HsmPool]]:
        """Every configured pool, or the one named."""
        if token:
            return [self.pool(token)]
        return list(self._pools.items())

    def _pool_for(self, message: hsm_pb2.KeyRef, ref: KeyRef) -> tuple[str, HsmPool]:
        if not message.token and ref.token is not None:
            # A URI names the token by its label: pick the pool serving that token.
            for name, pool in self._pools.items():
                if pool.config.token_label == ref.token:
                    return name, pool
        return self.pool(message.token, field="key.token")

    def check_key(self, label: str) -> None:
        """POLICY_DENIED (rule=key) unless the caller's role may use keys labelled so."""
        self._policy.current.check_key(label)

    def may_use(self, label: str) -> bool:
        return self._policy.current.allows_key(current_caller().role, label)

    def check_create(self, label: str) -> None:
        """POLICY_DENIED (rule=create) unless the caller's role may create keys labelled so."""
        self._policy.current.check_create(label)

    async def resolve(
        self,
        message: hsm_pb2.KeyRef,
        classes: tuple[KeyClass, ...] = ANY_CLASSES,
        field: str = "key",
    ) -> ResolvedKey:
        """The key a request names, after the policy allowed the caller to use it.

        A missing key and a key the caller may not use raise the same error
        (``unusable``): a label is checked before any lookup, so nothing about
        a hidden key is even looked at; an id or URI must be resolved first, and
        a hit outside the caller's rules is then reported as a miss.
        """
        ref = hsm_convert.key_ref(message, field)
        reference = hsm_convert.ref_text(message)
        token, pool = self._pool_for(message, ref)
        with annotated(token, reference):
            if ref.label is not None and not self.may_use(ref.label):
                raise unusable(reference, hidden=True)
            try:
                info = await pool.describe(ref, classes)
            except KeyNotFound:
                raise unusable(reference, hidden=False) from None
            if not self.may_use(info.label):
                raise unusable(reference, hidden=True)
        return ResolvedKey(token, pool, info)

    def may_export_derived(self, base_label: str) -> bool:
        """True when a ``derive-value:`` rule matching the base key lists the caller's role."""
        role = current_caller().role
        for rule in self._policy.current.config.keys:
            if not rule.pattern.startswith(DERIVE_VALUE_PREFIX):
                continue
            if glob_match(base_label, rule.pattern[len(DERIVE_VALUE_PREFIX) :]):
                return role in rule.roles
        return False

    def check_export_derived(self, base_label: str) -> None:
        if not self.may_export_derived(base_label):
            raise errors.PolicyDenied(
                f"role {current_caller().role!r} may not receive values derived from "
                f"{base_label!r}",
                rule="key",
            )
