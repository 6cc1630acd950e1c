"""maintenance_fn: the sweeps behind "nothing waits for ever" (booking_core.services.maintenance), every minute.

Event: EventBridge's scheduled event (or `{}`). Returns what each sweep did: stale holds completed or expired,
stranded requests re-driven or parked, old queued requests expired, rows deleted by retention.
"""
import logging

from booking_core import bootstrap, config, logs
from booking_core.services.maintenance import (
    expire_old_queued,
    redrive_stranded,
    run_sweeps,
    sweep_stale_holds,
)

logs.setup("maintenance_fn")
log = logging.getLogger(__name__)

RETENTION_BATCH = 1000  # rows per kind and run: a backlog is worked off over runs, never one long delete


@logs.with_lambda_context
def handler(event: dict, context: object) -> dict:
    summary = run_sweeps({
        "stale_holds": lambda: sweep_stale_holds(bootstrap.booking_repository(), bootstrap.payment_provider(),
                                                 bootstrap.decision_store(), config.hold_limit_s()),
        "stranded": lambda: redrive_stranded(bootstrap.decision_store(), bootstrap.publisher(),
                                             bootstrap.retry_table(), config.requests_topic(),
                                             config.pending_redrive_s(), config.max_redrives()),
        "old_queued": lambda: expire_old_queued(bootstrap.retry_store(), bootstrap.booking_repository(),
                                                bootstrap.decision_store(), config.queued_max_age_s()),
        "retention": lambda: bootstrap.retention().purge(config.retention_days(), RETENTION_BATCH),
    })
    log.info("maintenance run", extra={"summary": summary})
    return summary
