"""EventBridge schedule expressions (rate(...) and cron(...)) and the scheduled-event shape."""
from __future__ import annotations

import datetime as dt
import re
import uuid

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_DOW = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MON = {m: i for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                                      "NOV", "DEC"], start=1)}


def _field(spec: str, low: int, high: int, names: dict | None = None) -> set[int] | None:
    """Values a cron field allows; None for * and ? (anything)."""
    if spec in ("*", "?"):
        return None
    values: set[int] = set()
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_s = part.split("/")
            step = int(step_s)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-")
            start, end = int(names.get(a, a) if names else a), int(names.get(b, b) if names else b)
        else:
            start = int(names.get(part, part) if names else part)
            end = high if step > 1 else start
        values.update(range(start, end + 1, step))
    return values


class Schedule:
    """next_after(t) gives the next firing time strictly after t (UTC, minute resolution for cron)."""

    def __init__(self, expression: str):
        self.expression = expression.strip()
        rate = _RATE.match(self.expression)
        if rate:
            self.interval_s = int(rate.group(1)) * _UNIT_S[rate.group(2).rstrip("s")]
            self.cron = None
        elif self.expression.startswith("cron(") and self.expression.endswith(")"):
            parts = self.expression[5:-1].split()
            if len(parts) != 6:
                raise ValueError(f"cron needs 6 fields: {expression}")
            self.interval_s = None
            self.cron = (_field(parts[0], 0, 59), _field(parts[1], 0, 23), _field(parts[2], 1, 31),
                         _field(parts[3], 1, 12, _MON), _field(parts[4], 1, 7, _DOW), _field(parts[5], 1970, 2199))
        else:
            raise ValueError(f"unsupported schedule expression {expression!r}")

    def _matches(self, t: dt.datetime) -> bool:
        minute, hour, dom, month, dow, year = self.cron
        aws_dow = (t.isoweekday() % 7) + 1  # SUN=1 ... SAT=7
        return all(allowed is None or value in allowed for allowed, value in (
            (minute, t.minute), (hour, t.hour), (dom, t.day), (month, t.month), (dow, aws_dow), (year, t.year)))

    def next_after(self, t: dt.datetime) -> dt.datetime:
        if self.interval_s is not None:
            return t + dt.timedelta(seconds=self.interval_s)
        candidate = t.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        for _ in range(60 * 24 * 366 * 2):
            if self._matches(candidate):
                return candidate
            candidate += dt.timedelta(minutes=1)
        raise ValueError(f"{self.expression} never fires")


def scheduled_event(rule_arn: str, time: dt.datetime | None = None, detail: dict | None = None) -> dict:
    """The event EventBridge sends a Lambda target (as `sam local generate-event cloudwatch scheduled-event`)."""
    time = time or dt.datetime.now(dt.UTC)
    return {
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [rule_arn],
        "detail": detail or {},
        "version": "0",
    }
