"""The IdempotencyStore contract, run on the in-memory fake and on the DynamoDB adapter (moto)."""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamodb import DynamoDBIdempotencyStore
from chalicelib.services.ports import IdempotencyRecord, IdempotencyStore
from tests.fakes import InMemoryIdempotencyStore

T0 = 1_795_000_000
TTL = 48 * 3600
LOCK = 30
RESPONSE = {"out_trade_no": "o-1", "order_info": "app_id=…&sign=abc", "status": "WAIT_BUYER_PAY", "n": [1, {"a": None}]}


@pytest.fixture(params=["in_memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> IdempotencyStore:
    if request.param == "in_memory":
        return InMemoryIdempotencyStore()
    table = request.getfixturevalue("table")
    return DynamoDBIdempotencyStore(request.getfixturevalue("dynamodb"), table)


def _claim(store: IdempotencyStore, request_hash: str = "h1", now: int = T0) -> IdempotencyRecord | None:
    return store.claim("key-1", request_hash, now=now, ttl=TTL, lock_seconds=LOCK)


def test_the_first_request_with_a_key_claims_it(store: IdempotencyStore) -> None:
    assert _claim(store) is None


def test_a_retry_while_the_first_request_runs_sees_it_in_progress(store: IdempotencyStore) -> None:
    _claim(store)
    assert _claim(store, now=T0 + 1) == IdempotencyRecord("key-1", "h1", None, None)


def test_a_retry_after_completion_gets_the_recorded_response(store: IdempotencyStore) -> None:
    _claim(store)
    store.complete("key-1", RESPONSE, 201)
    assert _claim(store, now=T0 + 5) == IdempotencyRecord("key-1", "h1", RESPONSE, 201)


def test_a_different_request_with_the_same_key_gets_the_original_record(store: IdempotencyStore) -> None:
    _claim(store)
    store.complete("key-1", RESPONSE, 201)
    record = _claim(store, "h2", now=T0 + 5)
    assert record is not None
    assert record.request_hash == "h1"


def test_keys_are_independent(store: IdempotencyStore) -> None:
    _claim(store)
    assert store.claim("key-2", "h1", now=T0, ttl=TTL, lock_seconds=LOCK) is None


def test_a_released_claim_can_be_claimed_again(store: IdempotencyStore) -> None:
    _claim(store)
    store.release("key-1")
    assert _claim(store, "h2", now=T0 + 1) is None
    assert _claim(store, now=T0 + 2) == IdempotencyRecord("key-1", "h2", None, None)


def test_release_keeps_a_completed_record(store: IdempotencyStore) -> None:
    _claim(store)
    store.complete("key-1", RESPONSE, 201)
    store.release("key-1")
    assert _claim(store, now=T0 + 1) == IdempotencyRecord("key-1", "h1", RESPONSE, 201)


def test_releasing_an_unknown_key_is_a_no_op(store: IdempotencyStore) -> None:
    store.release("never-claimed")
    assert store.claim("never-claimed", "h1", now=T0, ttl=TTL, lock_seconds=LOCK) is None


def test_an_expired_record_counts_as_gone_even_before_ttl_deletes_it(store: IdempotencyStore) -> None:
    _claim(store)
    store.complete("key-1", RESPONSE, 201)
    assert _claim(store, now=T0 + TTL - 1) is not None
    assert _claim(store, "h2", now=T0 + TTL) is None
    assert _claim(store, now=T0 + TTL + 1) == IdempotencyRecord("key-1", "h2", None, None)


def test_an_in_progress_claim_older_than_the_lock_is_taken_over(store: IdempotencyStore) -> None:
    _claim(store)
    assert _claim(store, "h2", now=T0 + LOCK - 1) == IdempotencyRecord("key-1", "h1", None, None)
    assert _claim(store, "h2", now=T0 + LOCK) is None
    assert _claim(store, now=T0 + LOCK + 1) == IdempotencyRecord("key-1", "h2", None, None)


def test_a_completed_record_is_never_taken_over_before_it_expires(store: IdempotencyStore) -> None:
    _claim(store)
    store.complete("key-1", {"ok": True}, 201)
    assert _claim(store, "h2", now=T0 + LOCK * 100) == IdempotencyRecord("key-1", "h1", {"ok": True}, 201)
