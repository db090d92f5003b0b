"""Orgs, apps and their hashed secrets in the config table.

Item keys: pk = ORG#{org_id}; sk = CONFIG for the org (the key the integration-testing guide's `aws dynamodb
get-item` prints), APP#{app_id} for an app. Every write is conditional on the item's version, so a concurrent
rotation and settings update cannot overwrite each other.
Reads are cached briefly per process, misses too, in bounded caches: the worker prices every event and the API checks
every request against them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache
from pydantic import TypeAdapter

from catalog.credentials import Principal, StoredSecret, hash_secret, matching_generation, new_secret, rotated
from catalog.model import (
    App,
    AppSettings,
    LabelConflict,
    ModelPriceHistory,
    ModelSpec,
    Org,
    OrgSettings,
    ProfileHistory,
    UnknownLabels,
)
from catalog.price_history import Priced, PriceHistory
from catalog.profiles import InferenceProfile
from catalog.sessions import SessionGrant, SessionState

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

_SECRETS = TypeAdapter(list[StoredSecret])
_PROFILES = TypeAdapter(dict[str, InferenceProfile])
MAX_PROFILES = 20
ORG_SORT_KEY = "CONFIG"
_MAX_ATTEMPTS = 5
# Bounds of the per-process caches; past them the oldest entries go (and are read again when asked for).
CATALOG_CACHE_ENTRIES = 10_000
SESSION_CACHE_ENTRIES = 10_000


class ConcurrentUpdate(RuntimeError):
    """The item kept changing under us; the caller may retry the whole request."""


class CatalogEntryNotFound(LookupError):
    """What a request names does not exist."""


class OrgNotFound(CatalogEntryNotFound):
    def __init__(self, org_id: str) -> None:
        super().__init__(f"org {org_id} does not exist")


class AppNotFound(CatalogEntryNotFound):
    def __init__(self, org_id: str, app_id: str) -> None:
        super().__init__(f"app {app_id} does not exist in org {org_id}")


class LabelInUse(ValueError):
    """An update would remove model labels that an app still names."""


class ProfileNotFound(CatalogEntryNotFound):
    pass


class TooManyProfiles(ValueError):
    pass


def not_found(principal: Principal) -> CatalogEntryNotFound:
    if principal.app_id is None:
        return OrgNotFound(principal.org_id)
    return AppNotFound(principal.org_id, principal.app_id)


def org_key(org_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"ORG#{org_id}"}, "sk": {"S": ORG_SORT_KEY}}


def app_key(org_id: str, app_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"ORG#{org_id}"}, "sk": {"S": f"APP#{app_id}"}}


def principal_key(principal: Principal) -> dict[str, Any]:
    if principal.app_id is None:
        return org_key(principal.org_id)
    return app_key(principal.org_id, principal.app_id)


@dataclass(frozen=True)
class Provisioned:
    created: bool
    client_id: str
    # Present only when this call created the principal: the one time the secret is ever shown.
    client_secret: str | None


class CatalogStore:
    def __init__(
        self,
        ddb: DynamoDBClient,
        table: str,
        cache_ttl_s: float = 5.0,
        session_cache_ttl_s: float = 2.0,
        price_change_notice_s: float = 300.0,
    ) -> None:
        self._ddb = ddb
        self._table = table
        # Entries and misses alike, bounded in number and age: unknown ids cannot grow it without bound.
        self._cache: TTLCache[tuple[str, ...], dict[str, Any] | None] | None = (
            TTLCache(CATALOG_CACHE_ENTRIES, cache_ttl_s) if cache_ttl_s > 0 else None
        )
        # Checked on every bearer request: trusted briefly, like a "not revoked" answer (README, Security).
        self._sessions: TTLCache[Principal, SessionState | None] | None = (
            TTLCache(SESSION_CACHE_ENTRIES, session_cache_ttl_s) if session_cache_ttl_s > 0 else None
        )
        # How long after a price change is saved it takes effect: longer than any reader's cache of the org.
        self._price_change_notice_s = price_change_notice_s

    # -- reads -------------------------------------------------------------------------------------------------

    async def _get_item(self, key: dict[str, Any]) -> dict[str, Any] | None:
        response = await self._ddb.get_item(TableName=self._table, Key=key, ConsistentRead=True)
        item = response.get("Item")
        return dict(item) if item else None

    async def _cached(self, cache_key: tuple[str, ...], key: dict[str, Any]) -> dict[str, Any] | None:
        if self._cache is not None and cache_key in self._cache:
            return self._cache[cache_key]
        item = await self._get_item(key)
        if self._cache is not None:
            self._cache[cache_key] = item
        return item

    def invalidate(self) -> None:
        if self._cache is not None:
            self._cache.clear()

    async def get_org(self, org_id: str) -> Org | None:
        item = await self._cached(("org", org_id), org_key(org_id))
        return _org_from_item(org_id, item) if item else None

    async def require_org(self, org_id: str) -> Org:
        org = await self.get_org(org_id)
        if org is None:
            raise OrgNotFound(org_id)
        return org

    async def require_app(self, org_id: str, app_id: str) -> App:
        app = await self.get_app(org_id, app_id)
        if app is None:
            raise AppNotFound(org_id, app_id)
        return app

    async def get_app(self, org_id: str, app_id: str) -> App | None:
        item = await self._cached(("app", org_id, app_id), app_key(org_id, app_id))
        if not item:
            return None
        return _app_from_item(org_id, app_id, item)

    async def list_apps(self, org_id: str) -> list[App]:
        apps: list[App] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :app)",
            "ExpressionAttributeValues": {":pk": {"S": f"ORG#{org_id}"}, ":app": {"S": "APP#"}},
        }
        while True:
            page = await self._ddb.query(**kwargs)
            for item in page.get("Items", []):
                app_id = item["sk"]["S"].removeprefix("APP#")
                apps.append(_app_from_item(org_id, app_id, item))
            if "LastEvaluatedKey" not in page:
                return apps
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def list_orgs(self, limit: int) -> list[Org]:
        """Up to `limit` orgs, in no particular order. A Scan: for operator views, never on a client's request path."""
        orgs: list[Org] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :org",
            "ExpressionAttributeValues": {":org": org_key("")["sk"]},
        }
        while len(orgs) < limit:
            page = await self._ddb.scan(**kwargs)
            for item in page.get("Items", []):
                orgs.append(_org_from_item(item["pk"]["S"].removeprefix("ORG#"), item))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return orgs[:limit]

    async def list_org_ids(self) -> list[str]:
        """Every org's id (a scan of the config table: operator tooling only, never on a request path)."""
        org_ids: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "ProjectionExpression": "pk, sk",
            "FilterExpression": "sk = :org",
            "ExpressionAttributeValues": {":org": org_key("")["sk"]},
        }
        while True:
            page = await self._ddb.scan(**kwargs)
            org_ids += [item["pk"]["S"].removeprefix("ORG#") for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return sorted(org_ids)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def authenticate(self, principal: Principal, secret: str, now_s: int | None = None) -> SessionGrant | None:
        """What a session begun with this secret records; None for an unknown client or a wrong or retired secret."""
        # Never cached: a rotation with no grace period must lock the old secret out at once.
        item = await self._get_item(principal_key(principal))
        if item is None:
            return None
        stored = _SECRETS.validate_json(item["secrets"]["S"])
        generation = matching_generation(secret, stored, int(time.time()) if now_s is None else now_s)
        return None if generation is None else SessionGrant(generation, _session_epoch(item))

    async def session_state(self, principal: Principal) -> SessionState | None:
        """The client's secrets and session epoch; None if the client no longer exists."""
        if self._sessions is not None and principal in self._sessions:
            return self._sessions[principal]
        item = await self._get_item(principal_key(principal))
        state = (
            None
            if item is None
            else SessionState(tuple(_SECRETS.validate_json(item["secrets"]["S"])), _session_epoch(item))
        )
        if self._sessions is not None:
            self._sessions[principal] = state
        return state

    def _forget_sessions(self, principal: Principal) -> None:
        if self._sessions is not None:
            self._sessions.pop(principal, None)

    async def end_sessions(self, principal: Principal) -> int:
        """End every session of the client (its secrets stay valid); the client's new session epoch."""
        key = principal_key(principal)
        for _ in range(_MAX_ATTEMPTS):
            item = await self._get_item(key)
            if item is None:
                raise not_found(principal)
            epoch = _session_epoch(item) + 1
            if await self._conditional_update(
                key,
                item,
                "SET session_epoch = :epoch, version = :next, updated_at = :now",
                {":epoch": {"N": str(epoch)}},
            ):
                self._forget_sessions(principal)
                return epoch
        raise ConcurrentUpdate(f"{principal.client_id} changed concurrently {_MAX_ATTEMPTS} times")

    # -- writes ------------------------------------------------------------------------------------------------

    async def put_org(self, org_id: str, settings: OrgSettings) -> tuple[Org, Provisioned]:
        principal = Principal(org_id)
        if await self.get_org(org_id) is not None:
            # Removing a label apps still name would break them; the admin must update those apps first.
            for app in await self.list_apps(org_id):
                try:
                    app.check_against(Org(org_id=org_id, settings=settings, price_version=1))
                except (UnknownLabels, LabelConflict) as exc:
                    raise LabelInUse(f"app {app.app_id}: {exc}") from exc
        for _ in range(_MAX_ATTEMPTS):
            item = await self._get_item(org_key(org_id))
            if item is None:
                secret = new_secret()
                org = Org(org_id=org_id, settings=settings, price_version=1)
                if await self._create(org_key(org_id), settings.model_dump_json(), secret, {"price_version": 1}):
                    self.invalidate()
                    return org, Provisioned(True, principal.client_id, secret)
                continue
            current = _org_from_item(org_id, item)
            history = current.history()
            # Any change to what a label costs, or which labels have a price, is a new version, in force after the
            # notice period (catalog/price_history.py); the versions before it keep pricing their events.
            if _priced(current.settings.models) != _priced(settings.models):
                history = self._after_notice(history, settings.models)
            org = Org(org_id=org_id, settings=settings, price_version=history.latest.version, price_history=history)
            numbers = {"price_version": org.price_version}
            strings = {"price_history": history.model_dump_json()}
            if await self._update_doc(org_key(org_id), item, settings.model_dump_json(), numbers, strings):
                self.invalidate()
                return org, Provisioned(False, principal.client_id, None)
        raise ConcurrentUpdate(f"org {org_id} changed concurrently {_MAX_ATTEMPTS} times")

    async def put_app(self, org: Org, app_id: str, settings: AppSettings) -> tuple[App, Provisioned]:
        principal = Principal(org.org_id, app_id)
        key = app_key(org.org_id, app_id)
        for _ in range(_MAX_ATTEMPTS):
            item = await self._get_item(key)
            # The app's inference profiles stay as they are: an ordering or a quota may name them.
            profiles = _app_from_item(org.org_id, app_id, item).profiles if item else {}
            app = App(org_id=org.org_id, app_id=app_id, settings=settings, profiles=profiles)
            app.check_against(org)
            if item is None:
                secret = new_secret()
                if await self._create(key, settings.model_dump_json(), secret, {}):
                    self.invalidate()
                    return app, Provisioned(True, principal.client_id, secret)
                continue
            if await self._update_doc(key, item, settings.model_dump_json(), {}):
                self.invalidate()
                return app, Provisioned(False, principal.client_id, None)
        raise ConcurrentUpdate(f"app {org.org_id}/{app_id} changed concurrently {_MAX_ATTEMPTS} times")

    async def put_profile(self, org: Org, app_id: str, label: str, profile: InferenceProfile) -> tuple[App, bool]:
        """Register (or replace) an app's inference profile; True if the label was new."""

        def added(current: App) -> dict[str, InferenceProfile]:
            if label not in current.profiles and len(current.profiles) >= MAX_PROFILES:
                raise TooManyProfiles(f"an app has at most {MAX_PROFILES} inference profiles")
            return {**current.profiles, label: profile}

        before, app = await self._change_profiles(org, app_id, added)
        return app, label not in before.profiles

    async def delete_profile(self, org: Org, app_id: str, label: str) -> None:
        def removed(current: App) -> dict[str, InferenceProfile]:
            if label not in current.profiles:
                raise ProfileNotFound(f"app {app_id} has no inference profile {label!r}")
            if label in (current.settings.model_ordering or []) or label in current.settings.daily_quotas_usd_micros:
                raise LabelInUse(f"app {app_id} names {label!r} in its model_ordering or quotas; update the app first")
            return {name: p for name, p in current.profiles.items() if name != label}

        await self._change_profiles(org, app_id, removed)

    async def _change_profiles(
        self, org: Org, app_id: str, change: Callable[[App], dict[str, InferenceProfile]]
    ) -> tuple[App, App]:
        """Read the app, give its profiles `change`d (which may refuse by raising), write them back if the app is
        still as read; (the app before, the app after)."""
        key = app_key(org.org_id, app_id)
        for _ in range(_MAX_ATTEMPTS):
            item = await self._get_item(key)
            if item is None:
                raise AppNotFound(org.org_id, app_id)
            current = _app_from_item(org.org_id, app_id, item)
            app = self._with_profiles(current, change(current))
            app.check_against(org)
            if await self._set_profiles(key, item, app):
                return current, app
        raise ConcurrentUpdate(f"app {org.org_id}/{app_id} changed concurrently {_MAX_ATTEMPTS} times")

    def _after_notice(self, history: PriceHistory[Priced], models: Mapping[str, Priced]) -> PriceHistory[Priced]:
        """The history with `models` as a new version, in force once the notice period has passed."""
        now = datetime.now(UTC)
        return history.changed(models, now + timedelta(seconds=self._price_change_notice_s), now)

    def _with_profiles(self, current: App, profiles: dict[str, InferenceProfile]) -> App:
        """The app with these profiles; a change to what a profile label costs (or which labels have a price) is a new
        version of its profile history, in force after the notice period, as for an org's prices."""
        history = current.history()
        if _routes(current.profiles) != _routes(profiles):
            history = self._after_notice(history, profiles)
        return current.model_copy(
            update={"profiles": profiles, "profile_version": history.latest.version, "profile_history": history}
        )

    async def _set_profiles(self, key: dict[str, Any], item: dict[str, Any], app: App) -> bool:
        written = await self._conditional_update(
            key,
            item,
            "SET profiles = :profiles, profile_history = :history, profile_version = :pv, version = :next, "
            "updated_at = :now",
            {
                ":profiles": {"S": _PROFILES.dump_json(app.profiles).decode()},
                ":history": {"S": app.history().model_dump_json()},
                ":pv": {"N": str(app.profile_version)},
            },
        )
        if written:
            self.invalidate()
        return written

    async def rotate_secret(self, principal: Principal, grace_hours: int, now_s: int | None = None) -> str:
        now = int(time.time()) if now_s is None else now_s
        key = principal_key(principal)
        for _ in range(_MAX_ATTEMPTS):
            item = await self._get_item(key)
            if item is None:
                raise not_found(principal)
            secret = new_secret()
            stored = rotated(_SECRETS.validate_json(item["secrets"]["S"]), hash_secret(secret), grace_hours, now)
            if await self._conditional_update(
                key,
                item,
                "SET secrets = :secrets, version = :next, updated_at = :now",
                {":secrets": {"S": _SECRETS.dump_json(stored).decode()}},
            ):
                self._forget_sessions(principal)
                return secret
        raise ConcurrentUpdate(f"{principal.client_id} changed concurrently {_MAX_ATTEMPTS} times")

    async def _create(self, key: dict[str, Any], doc: str, secret: str, numbers: dict[str, int]) -> bool:
        item = {
            **key,
            "doc": {"S": doc},
            "secrets": {"S": _SECRETS.dump_json([StoredSecret(sha256=hash_secret(secret))]).decode()},
            "version": {"N": "1"},
            "updated_at": {"N": str(int(time.time()))},
            **{name: {"N": str(value)} for name, value in numbers.items()},
        }
        try:
            await self._ddb.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def _update_doc(
        self,
        key: dict[str, Any],
        item: dict[str, Any],
        doc: str,
        numbers: dict[str, int],
        strings: dict[str, str] | None = None,
    ) -> bool:
        sets = ["doc = :doc", "version = :next", "updated_at = :now"]
        values: dict[str, Any] = {":doc": {"S": doc}}
        for name, value in numbers.items():
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = {"N": str(value)}
        for name, text in (strings or {}).items():
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = {"S": text}
        return await self._conditional_update(key, item, "SET " + ", ".join(sets), values)

    async def _conditional_update(
        self, key: dict[str, Any], item: dict[str, Any], expression: str, values: dict[str, Any]
    ) -> bool:
        version = int(item["version"]["N"])
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression=expression,
                ConditionExpression="version = :expected",
                ExpressionAttributeValues={
                    **values,
                    ":expected": {"N": str(version)},
                    ":next": {"N": str(version + 1)},
                    ":now": {"N": str(int(time.time()))},
                },
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True


def _session_epoch(item: dict[str, Any]) -> int:
    return int(item["session_epoch"]["N"]) if "session_epoch" in item else 0


def _app_from_item(org_id: str, app_id: str, item: dict[str, Any]) -> App:
    profiles = _PROFILES.validate_json(item["profiles"]["S"]) if "profiles" in item else {}
    # An app saved before profile histories existed has its current profiles only, in force since ever.
    history = ProfileHistory.model_validate_json(item["profile_history"]["S"]) if "profile_history" in item else None
    return App(
        org_id=org_id,
        app_id=app_id,
        settings=AppSettings.model_validate_json(item["doc"]["S"]),
        profiles=profiles,
        profile_version=int(item["profile_version"]["N"]) if "profile_version" in item else 1,
        profile_history=history,
    )


def _org_from_item(org_id: str, item: dict[str, Any]) -> Org:
    # An org saved before price histories existed has its current prices only, in force since ever.
    history = ModelPriceHistory.model_validate_json(item["price_history"]["S"]) if "price_history" in item else None
    return Org(
        org_id=org_id,
        settings=OrgSettings.model_validate_json(item["doc"]["S"]),
        price_version=int(item["price_version"]["N"]),
        price_history=history,
    )


def _routes(profiles: Mapping[str, InferenceProfile]) -> dict[str, Any]:
    return {label: profile.regions for label, profile in profiles.items()}


def _priced(models: Mapping[str, ModelSpec]) -> dict[str, Any]:
    """What each label costs and calls: a difference is a new price version."""
    return {label: spec.model_dump() for label, spec in models.items()}
