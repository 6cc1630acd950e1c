"""The local scheduler's EventBridge expressions: rate(...) and six-field cron(...) in UTC."""
import datetime as dt

import pytest

from infra.local.schedule import Schedule, scheduled_event

T = dt.datetime(2026, 11, 25, 9, 30, 15, tzinfo=dt.UTC)  # a Wednesday


def test_a_rate_fires_one_interval_after_the_last_run():
    assert Schedule("rate(1 minute)").next_after(T) == T + dt.timedelta(minutes=1)
    assert Schedule("rate(2 hours)").next_after(T) == T + dt.timedelta(hours=2)


def test_the_nightly_cron_fires_at_two_the_next_morning():
    assert Schedule("cron(0 2 * * ? *)").next_after(T) == dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)


def test_day_of_week_names_use_eventbridge_numbering():
    # MON-FRI at 08:15: from a Friday evening the next run is Monday.
    friday_evening = dt.datetime(2026, 11, 27, 20, 0, tzinfo=dt.UTC)
    assert Schedule("cron(15 8 ? * MON-FRI *)").next_after(friday_evening) == dt.datetime(
        2026, 11, 30, 8, 15, tzinfo=dt.UTC)


def test_steps_and_lists_in_cron_fields():
    assert Schedule("cron(0/20 * * * ? *)").next_after(T) == dt.datetime(2026, 11, 25, 9, 40, tzinfo=dt.UTC)
    assert Schedule("cron(5,50 9 * * ? *)").next_after(T) == dt.datetime(2026, 11, 25, 9, 50, tzinfo=dt.UTC)


@pytest.mark.parametrize("expression", ["rate(0.5 minutes)", "cron(0 2 * * ?)", "every day"])
def test_an_expression_eventbridge_would_refuse_is_refused(expression):
    with pytest.raises(ValueError):
        Schedule(expression)


def test_the_scheduled_event_has_the_shape_eventbridge_sends():
    event = scheduled_event("arn:aws:events:us-east-1:123456789012:rule/Nightly", T)

    assert (event["source"], event["detail-type"], event["time"]) == ("aws.events", "Scheduled Event",
                                                                      "2026-11-25T09:30:15Z")
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/Nightly"]
