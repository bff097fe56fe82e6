"""Retention's pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from pydantic import ValidationError

from retention.domain import (
    FALLBACK_PLAN,
    KEPT_REGARDLESS_OF_PLAN,
    PLANS,
    ExportLink,
    PlanTerms,
    account_reference,
    plan_terms,
    sweep_cutoffs,
    sweep_slot,
)
from shared.data_map import SWEPT_BY_PLAN, RetentionCategory


@pytest.mark.clause("TERMINATION")
def test_termination_certificate_names_the_account_only_by_keyed_hash() -> None:
    account_id = uuid4()
    reference = account_reference(account_id, b"key-1")
    assert str(account_id) not in reference
    assert reference == account_reference(account_id, b"key-1")
    assert reference != account_reference(account_id, b"key-2")


@pytest.mark.clause("PLAN-RETENTION")
def test_plan_retention_every_plan_says_how_long_for_every_category() -> None:
    """PLAN-RETENTION: each category is kept either for the time each plan states, or by a
    rule that is the same for every plan (and said), never neither, never both."""
    for name, terms in PLANS.items():
        stated = set(terms.kept)
        assert stated == SWEPT_BY_PLAN, name
        assert not stated & set(KEPT_REGARDLESS_OF_PLAN), name
        assert stated | set(KEPT_REGARDLESS_OF_PLAN) == set(RetentionCategory), name
    # A longer plan never keeps less than a shorter one.
    for category in SWEPT_BY_PLAN:
        assert PLANS["free"].kept[category] <= PLANS["standard"].kept[category]
        assert PLANS["standard"].kept[category] <= PLANS["enterprise"].kept[category]
    assert min(PLANS, key=lambda name: sum(PLANS[name].kept.values(), timedelta())) == FALLBACK_PLAN


@pytest.mark.clause("PLAN-RETENTION")
def test_plan_retention_a_plan_missing_a_category_or_keeping_it_no_time_is_refused() -> None:
    with pytest.raises(ValidationError, match="exactly these categories"):
        PlanTerms(grace_period=timedelta(0), kept={RetentionCategory.DELIVERY_LOG: timedelta(1)})
    with pytest.raises(ValidationError, match="positive time"):
        PlanTerms(
            grace_period=timedelta(0),
            kept={
                RetentionCategory.DELIVERY_LOG: timedelta(days=1),
                RetentionCategory.REQUEST_METADATA: timedelta(0),
            },
        )


@pytest.mark.clause("PLAN-RETENTION")
def test_plan_retention_cutoffs_are_the_plans_periods_back_from_the_sweeps_time() -> None:
    as_of = datetime(2030, 6, 1, tzinfo=UTC)
    cutoffs = sweep_cutoffs(plan_terms(PLANS, "free"), as_of)
    assert cutoffs == {
        "delivery-log": as_of - timedelta(days=90),
        "request-metadata": as_of - timedelta(days=30),
    }
    assert sweep_cutoffs(plan_terms(PLANS, "no-such-plan"), as_of) == cutoffs
    assert sweep_cutoffs(plan_terms(PLANS, None), as_of) == cutoffs


@pytest.mark.clause("PLAN-RETENTION")
def test_plan_retention_every_instance_computes_the_same_slot_for_a_sweep() -> None:
    day = timedelta(days=1)
    morning = datetime(2030, 6, 1, 6, 0, tzinfo=UTC)
    evening = datetime(2030, 6, 1, 23, 59, tzinfo=UTC)
    assert sweep_slot(morning, day) == sweep_slot(evening, day) == datetime(2030, 6, 1, tzinfo=UTC)
    assert sweep_slot(evening + timedelta(minutes=2), day) == datetime(2030, 6, 2, tzinfo=UTC)


@pytest.mark.clause("TERMINATION")
def test_termination_an_export_link_signs_its_saga_account_and_end() -> None:
    link = ExportLink(saga_id=uuid4(), account_id=uuid4(), expires=1_900_000_000)
    other = ExportLink(saga_id=link.saga_id, account_id=uuid4(), expires=link.expires)
    assert link.message() != other.message()
    assert str(link.account_id) in link.message().decode()
    assert "signature=" in link.query(b"\x00" * 64)
