"""Verified API tokens cached in process, revoked across processes through Redis.

Looking a token up in PostgreSQL on every request cost an ORM query (and its SQL
compilation) per API call. A web process now reuses a verified token for
AUTH_TOKEN_CACHE_SECONDS. Revocation:

- through the app (a token deleted, its user saved or deleted, by any process): the
  change is published on a Redis channel after it commits, and every web process
  drops the entries at once (a listener thread per process);
- outside the app (raw SQL, `QuerySet.update`), or while Redis cannot deliver the
  message: the entry expires after at most AUTH_TOKEN_CACHE_SECONDS.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "backend:auth:tokens-revoked"
# Bounds the memory of a process that sees many distinct tokens.
MAX_ENTRIES = 10_000
LISTENER_RETRY_SECONDS = 1.0
LISTENER_POLL_SECONDS = 15.0

# The cache's clock; tests move it forward instead of sleeping.
clock = time.monotonic


class TokenCache:
    """Token key -> (expiry, user, token), shared by the threads of one process."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Any, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, user, token = entry
        if clock() >= expires_at:
            self._entries.pop(key, None)
            return None
        # Each request gets its own user object: views may set attributes on it.
        return copy.copy(user), token

    def put(self, key: str, user: Any, token: Any, ttl: float) -> None:
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (clock() + ttl, user, token)

    def evict(self, *, keys: Iterable[str] = (), user_ids: Iterable[Any] = ()) -> None:
        keys, user_ids = set(keys), {str(pk) for pk in user_ids}
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)
            if user_ids:
                for key, (_, user, _) in list(self._entries.items()):
                    if str(user.pk) in user_ids:
                        self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


token_cache = TokenCache()
_listener_pid: int | None = None
_listener_lock = threading.Lock()
# Set while this process's listener is subscribed (tests wait for it).
listening = threading.Event()


def revocation_channel(redis_url: str) -> str:
    """Return the channel of one Redis database: channels are server-wide, and
    deployments sharing a server keep apart by database number."""
    database = urlsplit(redis_url).path.strip("/") or "0"
    return f"{CHANNEL_PREFIX}:db{database}"


def token_cache_lookup(key: str) -> tuple[Any, Any] | None:
    """Return (user, token) for a cached verified token key, else None."""
    if settings.AUTH_TOKEN_CACHE_SECONDS <= 0:
        return None
    _ensure_listener()
    return token_cache.get(key)


def token_cache_store(*, key: str, user: Any, token: Any) -> None:
    """Remember a token the database has just verified."""
    ttl = settings.AUTH_TOKEN_CACHE_SECONDS
    if ttl > 0:
        token_cache.put(key, user, token, ttl)


def _broadcast(payload: dict[str, Any]) -> bool:
    """Publish a message to every web process's revocation listener; return whether
    it went out (no REDIS_URL, or Redis failing: this process alone acted)."""
    if not settings.REDIS_URL:
        return False
    from django_redis import get_redis_connection
    from redis.exceptions import RedisError

    try:
        # The Redis the listeners subscribe to (REDIS_URL), even when the cache has
        # one of its own.
        get_redis_connection(settings.DURABLE_REDIS_ALIAS).publish(
            revocation_channel(settings.REDIS_URL), json.dumps(payload)
        )
    except RedisError as exc:
        logger.warning(
            "token revocation not broadcast (Redis: %s); other processes drop "
            "their cached tokens within AUTH_TOKEN_CACHE_SECONDS",
            exc,
        )
        return False
    return True


def tokens_revoke(*, keys: Iterable[str] = (), user_ids: Iterable[Any] = ()) -> None:
    """Drop tokens from every web process's cache once the current transaction
    commits (before it, another process could cache them again from the database).
    """
    keys, user_ids = list(keys), [str(pk) for pk in user_ids]
    token_cache.evict(keys=keys, user_ids=user_ids)

    def publish() -> None:
        token_cache.evict(keys=keys, user_ids=user_ids)
        _broadcast({"keys": keys, "user_ids": user_ids})

    transaction.on_commit(publish)


def token_cache_flush() -> bool:
    """Empty every web process's token cache (this one's at once, the others' through
    the revocation channel); return whether the message was published.

    After a database restore a cached token may no longer exist, or belong to a
    user whose rights the backup undoes: every process reads tokens afresh. A
    process older than this message finds no `keys` in it and clears its cache as
    for any message it cannot read.
    """
    token_cache.clear()
    return _broadcast({"all": True})


def _ensure_listener() -> None:
    """Start this process's revocation listener once (again after a fork)."""
    global _listener_pid
    if _listener_pid == os.getpid() or not settings.REDIS_URL:
        return
    with _listener_lock:
        if _listener_pid == os.getpid():
            return
        _listener_pid = os.getpid()
        # Entries inherited through fork were never covered by a listener.
        token_cache.clear()
        threading.Thread(
            target=_listen,
            args=(settings.REDIS_URL, settings.REDIS_SOCKET_TIMEOUT),
            name="token-revocations",
            daemon=True,
        ).start()


def _listen(url: str, connect_timeout: float) -> None:
    from apps.core.redis.sentinel import redis_client

    subscribed_before = False
    while True:
        try:
            client = redis_client(
                url,
                target=settings.REDIS_SENTINEL,
                socket_connect_timeout=connect_timeout,
                socket_keepalive=True,
                # A silently dropped connection is found by a PING this often.
                health_check_interval=LISTENER_POLL_SECONDS,
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(revocation_channel(url))
            pubsub.get_message(timeout=connect_timeout)  # the confirmation
            if subscribed_before:
                # Revocations published while disconnected were missed: start
                # afresh. (The first subscription follows the process's start by
                # milliseconds; a revocation in that gap is bounded by the TTL.)
                token_cache.clear()
            subscribed_before = True
            listening.set()
            while True:
                message = pubsub.get_message(timeout=LISTENER_POLL_SECONDS)
                if message is not None:
                    _apply(message.get("data"))
        except Exception as exc:  # noqa: BLE001 - the listener must outlive outages
            listening.clear()
            logger.warning("token revocation listener reconnecting: %s", exc)
            time.sleep(LISTENER_RETRY_SECONDS)


def _apply(data: Any) -> None:
    try:
        payload = json.loads(data)
        if payload.get("all") is True:  # token_cache_flush
            token_cache.clear()
            return
        token_cache.evict(keys=payload["keys"], user_ids=payload["user_ids"])
    except (TypeError, ValueError, KeyError, AttributeError):
        logger.warning("ignored a malformed token revocation message")
        token_cache.clear()


def connect_signals() -> None:
    """Revoke cached tokens whenever the app deletes a token or changes its user."""
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_delete, post_save
    from rest_framework.authtoken.models import Token, TokenProxy

    def token_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
        tokens_revoke(keys=[instance.key])

    def user_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
        if kwargs.get("created"):
            return
        # is_active, is_staff or the user itself changed: re-read it next time.
        tokens_revoke(user_ids=[instance.pk])

    user_model = get_user_model()
    # The admin deletes TokenProxy rows: the signal names the proxy as its sender.
    for model in (Token, TokenProxy):
        post_delete.connect(
            token_deleted,
            sender=model,
            weak=False,  # local functions: a weak reference would die at once
            dispatch_uid=f"token-revoke-{model.__name__}",
        )
    for signal, uid in ((post_save, "user-saved"), (post_delete, "user-deleted")):
        signal.connect(user_changed, sender=user_model, weak=False, dispatch_uid=uid)
