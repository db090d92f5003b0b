"""ingest_api/selection.py: quota-aware model selection under ORG and APP quota scopes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from catalog.model import MAX_QUOTA_USD_MICROS
from ingest_api.selection import Cap, LabelStatus, app_quota, fail_safe, label_caps, org_quota, select_model
from tests.unit.factories import app, org

LABELS = ("premium", "standard", "economy")


def caps_of(selection_statuses: tuple[LabelStatus, ...], label: str) -> tuple[Cap, ...]:
    return next(s.caps for s in selection_statuses if s.model_label == label)


# --- ORG scope ------------------------------------------------------------------------------------------------------


def test_first_label_with_headroom_wins() -> None:
    o = org(LABELS, quotas={"premium": 1_000, "standard": 1_000})
    s = select_model(o, app(), org_spend={"premium": 10}, app_spend={})
    assert (s.model_label, s.position, s.mode) == ("premium", 0, "NORMAL")


def test_org_cap_counts_the_whole_orgs_spend() -> None:
    o = org(LABELS, quotas={"premium": 1_000})
    # This app spent nothing, but the org as a whole used the premium quota up.
    s = select_model(o, app(), org_spend={"premium": 1_000}, app_spend={"premium": 0})
    assert (s.model_label, s.position) == ("standard", 1)
    assert caps_of(s.statuses, "premium") == (Cap("org", 1_000, 1_000),)


def test_app_cap_also_applies_in_org_scope() -> None:
    o = org(LABELS, quotas={"premium": 1_000_000})
    a = app(quotas={"premium": 500})
    s = select_model(o, a, org_spend={"premium": 600}, app_spend={"premium": 500})
    assert (s.model_label, s.position) == ("standard", 1)
    assert caps_of(s.statuses, "premium") == (Cap("org", 600, 1_000_000), Cap("app", 500, 500))
    # The other apps of the org (their own spend 0) still get premium.
    other = select_model(o, app("search"), org_spend={"premium": 600}, app_spend={})
    assert other.model_label == "premium"


def test_app_cap_alone_in_org_scope() -> None:
    o = org(LABELS)
    s = select_model(o, app(quotas={"premium": 100}), org_spend={"premium": 10**9}, app_spend={"premium": 99})
    assert caps_of(s.statuses, "premium") == (Cap("app", 99, 100),)
    assert (s.model_label, s.mode) == ("premium", "TIGHT")


# --- APP scope ------------------------------------------------------------------------------------------------------


def test_app_scope_caps_each_apps_own_spend_by_its_app_quota() -> None:
    o = org(LABELS, quota_scope="APP", quotas={"premium": 1_000})
    a = app(quotas={"premium": 200})
    # The org's total is irrelevant in APP scope.
    s = select_model(o, a, org_spend={"premium": 10**12}, app_spend={"premium": 150})
    assert caps_of(s.statuses, "premium") == (Cap("app", 150, 200),)
    assert (s.model_label, s.mode) == ("premium", "NORMAL")
    s = select_model(o, a, org_spend={"premium": 0}, app_spend={"premium": 200})
    assert s.model_label == "standard"


def test_app_scope_uses_the_org_quota_as_each_apps_default() -> None:
    o = org(LABELS, quota_scope="APP", quotas={"premium": 1_000})
    s = select_model(o, app(), org_spend={"premium": 5_000}, app_spend={"premium": 999})
    assert caps_of(s.statuses, "premium") == (Cap("app", 999, 1_000),)
    assert (s.model_label, s.mode) == ("premium", "TIGHT")
    s = select_model(o, app(), org_spend={"premium": 5_000}, app_spend={"premium": 1_000})
    assert (s.model_label, s.position) == ("standard", 1)


def test_an_app_quota_can_be_larger_than_the_org_default_in_app_scope() -> None:
    o = org(LABELS, quota_scope="APP", quotas={"premium": 1_000})
    s = select_model(o, app(quotas={"premium": 10_000}), org_spend={}, app_spend={"premium": 5_000})
    assert (s.model_label, s.mode) == ("premium", "NORMAL")


# --- unlimited, TIGHT, EXHAUSTED ------------------------------------------------------------------------------------


def test_a_label_without_quota_is_unlimited() -> None:
    o = org(LABELS)
    s = select_model(o, app(), org_spend={"premium": 10**15}, app_spend={"premium": 10**15})
    assert (s.model_label, s.position, s.mode) == ("premium", 0, "NORMAL")
    assert s.statuses[0].caps == ()
    assert s.statuses[0].percent is None
    assert s.statuses[0].available


def test_tight_from_95_percent_normal_below() -> None:
    o = org(LABELS, quotas={"premium": 100_000})
    assert select_model(o, app(), {"premium": 94_999}, {}).mode == "NORMAL"
    assert select_model(o, app(), {"premium": 95_000}, {}).mode == "TIGHT"
    assert select_model(o, app(), {"premium": 99_999}, {}).mode == "TIGHT"
    assert select_model(o, app(), {"premium": 100_000}, {}).model_label == "standard"


def test_the_tightest_cap_sets_the_mode() -> None:
    o = org(LABELS, quotas={"premium": 1_000})
    s = select_model(o, app(quotas={"premium": 100}), org_spend={"premium": 100}, app_spend={"premium": 96})
    assert s.statuses[0].percent == 96.0
    assert (s.model_label, s.mode) == ("premium", "TIGHT")


def test_fallback_label_reports_its_own_mode() -> None:
    o = org(LABELS, quotas={"premium": 100, "standard": 100})
    s = select_model(o, app(), org_spend={"premium": 100, "standard": 10}, app_spend={})
    assert (s.model_label, s.mode) == ("standard", "NORMAL")
    s = select_model(o, app(), org_spend={"premium": 100, "standard": 97}, app_spend={})
    assert (s.model_label, s.mode) == ("standard", "TIGHT")


def test_exhausted_when_every_label_is_capped() -> None:
    o = org(LABELS, quotas=dict.fromkeys(LABELS, 10))
    s = select_model(o, app(), org_spend=dict.fromkeys(LABELS, 10), app_spend={})
    assert (s.model_label, s.position, s.mode) == (None, 3, "EXHAUSTED")
    assert [st.model_label for st in s.statuses] == list(LABELS)
    assert not any(st.available for st in s.statuses)


def test_spend_over_the_quota_is_exhausted_too() -> None:
    # Spend can overshoot: usage already in flight when the quota was reached is still counted.
    o = org(("premium",), quotas={"premium": 10})
    s = select_model(o, app(), org_spend={"premium": 25}, app_spend={})
    assert s.mode == "EXHAUSTED"
    assert s.statuses[0].percent == 250.0


def test_zero_quota_counts_as_exhausted() -> None:
    o = org(LABELS, quotas={"premium": 0})
    s = select_model(o, app(), org_spend={}, app_spend={})
    assert (s.model_label, s.position) == ("standard", 1)
    assert s.statuses[0].caps == (Cap("org", 0, 0),)
    assert s.statuses[0].percent == 100.0
    assert not s.statuses[0].available


# --- sticky position and ordering -----------------------------------------------------------------------------------


def test_sticky_position_is_never_moved_back() -> None:
    o = org(LABELS, quotas={"premium": 1_000})
    # Premium has headroom again (say, the quota was raised), but the app fell back earlier today.
    s = select_model(o, app(), org_spend={"premium": 0}, app_spend={}, sticky_position=1)
    assert (s.model_label, s.position) == ("standard", 1)
    s = select_model(o, app(), org_spend={}, app_spend={}, sticky_position=2)
    assert (s.model_label, s.position) == ("economy", 2)


def test_sticky_position_skips_forward_past_exhausted_labels() -> None:
    o = org(LABELS, quotas={"standard": 5})
    s = select_model(o, app(), org_spend={"standard": 5}, app_spend={}, sticky_position=1)
    assert (s.model_label, s.position) == ("economy", 2)


def test_sticky_position_past_the_end_is_exhausted_and_negative_is_zero() -> None:
    o = org(LABELS)
    assert select_model(o, app(), {}, {}, sticky_position=3).mode == "EXHAUSTED"
    assert select_model(o, app(), {}, {}, sticky_position=99).position == 3
    assert select_model(o, app(), {}, {}, sticky_position=-4).model_label == "premium"


def test_app_specific_ordering() -> None:
    o = org(LABELS, quotas={"economy": 100})
    a = app(ordering=["economy", "premium"])
    s = select_model(o, a, org_spend={"economy": 50}, app_spend={})
    assert (s.model_label, s.position) == ("economy", 0)
    assert [st.model_label for st in s.statuses] == ["economy", "premium"]
    s = select_model(o, a, org_spend={"economy": 100}, app_spend={})
    # Position is an index into the app's ordering, not the org's.
    assert (s.model_label, s.position) == ("premium", 1)
    # Standard is not in this app's ordering, so it is never selected.
    s = select_model(o, app(ordering=["economy"]), org_spend={"economy": 100}, app_spend={})
    assert (s.model_label, s.position, s.mode) == (None, 1, "EXHAUSTED")


# --- properties -----------------------------------------------------------------------------------------------------


def test_tight_is_decided_exactly_not_by_the_float_percent() -> None:
    # Just under 95%, yet 100.0 * spend / quota rounds to 95.0 in floating point.
    spend, quota = 412_749_872_143_711, 434_473_549_624_959
    assert 100 * spend < 95 * quota
    assert 100.0 * spend / quota >= 95.0
    o = org(("premium",), quotas={"premium": quota})
    assert select_model(o, app(), org_spend={"premium": spend}, app_spend={}).mode == "NORMAL"
    assert select_model(o, app(), org_spend={"premium": spend + 1}, app_spend={}).mode == "TIGHT"


quotas = st.integers(min_value=1, max_value=MAX_QUOTA_USD_MICROS)


@given(quotas, st.data())
def test_tight_threshold_is_exact(quota: int, data: st.DataObject) -> None:
    # Integer micro-USD near the 95% boundary: the float percentage must not decide the mode.
    boundary = -(-95 * quota // 100)  # least spend with spend / quota >= 95%
    spend = data.draw(st.integers(min_value=max(boundary - 2, 0), max_value=min(boundary + 2, quota - 1)))
    o = org(("premium",), quotas={"premium": quota})
    s = select_model(o, app(), org_spend={"premium": spend}, app_spend={})
    assert s.mode == ("TIGHT" if 100 * spend >= 95 * quota else "NORMAL")


@given(
    st.lists(st.one_of(st.none(), st.integers(0, 100)), min_size=3, max_size=3),
    st.lists(st.integers(0, 120), min_size=3, max_size=3),
    st.integers(-1, 4),
    st.sampled_from(["ORG", "APP"]),
)
def test_selection_invariants(quota_list: list[int | None], spend_list: list[int], sticky: int, scope: str) -> None:
    o = org(
        LABELS,
        quota_scope=scope,
        quotas={label: q for label, q in zip(LABELS, quota_list, strict=True) if q is not None},
    )
    spend = dict(zip(LABELS, spend_list, strict=True))
    s = select_model(o, app(), org_spend=spend, app_spend=spend, sticky_position=sticky)
    start = max(sticky, 0)
    if s.model_label is None:
        assert s.mode == "EXHAUSTED"
        assert s.position == len(LABELS)
        assert not any(status.available for status in s.statuses[start:])
    else:
        assert LABELS[s.position] == s.model_label
        assert s.position >= start
        assert s.statuses[s.position].available
        # Nothing between the sticky position and the choice was available.
        assert not any(status.available for status in s.statuses[start : s.position])
        quota = quota_list[s.position]
        assert quota is None or spend_list[s.position] < quota


# --- the quota rule, shared by model selection and the aggregate reads ---------------------------------------------


def test_org_scope_caps_the_org_by_its_quota_and_an_app_only_by_its_own() -> None:
    o = org(quotas={"premium": 100, "standard": 50})
    a = app(quotas={"premium": 30})
    assert (org_quota(o, "premium"), app_quota(o, a, "premium")) == (100, 30)
    # No app quota for standard: the app has no cap of its own, the org's cap still applies to it.
    assert (org_quota(o, "standard"), app_quota(o, a, "standard")) == (50, None)
    assert (org_quota(o, "economy"), app_quota(o, a, "economy")) == (None, None)


def test_app_scope_caps_no_org_total_and_defaults_each_app_to_the_org_quota() -> None:
    o = org(quotas={"premium": 100, "standard": 50}, quota_scope="APP")
    a = app(quotas={"premium": 300})
    assert (org_quota(o, "premium"), app_quota(o, a, "premium")) == (None, 300)
    assert (org_quota(o, "standard"), app_quota(o, a, "standard")) == (None, 50)
    assert app_quota(o, a, "economy") is None


def test_the_caps_of_a_selection_are_those_quotas() -> None:
    o = org(quotas={"premium": 100})
    a = app(quotas={"premium": 30})
    caps = label_caps(o, a, "premium", {"premium": 60}, {"premium": 20})
    assert caps == (Cap("org", 60, 100), Cap("app", 20, 30))


# --- failing safe while the counted spend lags ----------------------------------------------------------------------


def test_a_normal_answer_degrades_to_tight_while_metering_lags_or_its_lag_is_unknown() -> None:
    normal = select_model(org(quotas={"premium": 1000}), app(), {"premium": 10}, {})
    assert normal.mode == "NORMAL"
    assert fail_safe(normal, 0.4, max_lag_s=30) == (normal, False)
    assert fail_safe(normal, 30.0, max_lag_s=30) == (normal, False)
    for lag in (30.5, None):
        degraded, is_degraded = fail_safe(normal, lag, max_lag_s=30)
        assert is_degraded
        assert degraded.mode == "TIGHT"
        # The choice itself stands: the same label, the same caps; only how long it may be trusted changes.
        assert (degraded.model_label, degraded.statuses) == (normal.model_label, normal.statuses)


def test_tight_and_exhausted_answers_stay_what_they_are_when_degraded() -> None:
    tight = select_model(org(quotas={"premium": 1000}), app(), {"premium": 990}, {})
    exhausted = select_model(org(("premium",), quotas={"premium": 1000}), app(), {"premium": 1000}, {})
    assert fail_safe(tight, None, 30) == (tight, True)
    assert fail_safe(exhausted, 99.0, 30) == (exhausted, True)
    assert exhausted.mode == "EXHAUSTED"
