"""The global send rate (NEWSLETTER_SEND_RATE messages per second), shared by every worker
on every host through a counter per time window in Redis."""

from __future__ import annotations

import math
import time
from typing import Any

from redis.exceptions import RedisError

KEY = "newsletter:send-rate:"


class SendRate:
    def __init__(self, redis: Any, per_second: float) -> None:
        self.redis = redis
        self.per_second = per_second
        # Below one message a second the window grows so that its budget is one message.
        self.window = max(1.0, 1.0 / per_second) if per_second > 0 else 1.0
        self.budget = max(1, math.floor(per_second * self.window)) if per_second > 0 else 0

    def wait(self) -> None:
        """Block until this worker may send one more message."""
        if self.per_second <= 0:
            return
        while True:
            now = time.time()
            slot = int(now // self.window)
            try:
                pipe = self.redis.pipeline()
                pipe.incr(KEY + str(slot))
                pipe.expire(KEY + str(slot), int(self.window) + 5)
                used = pipe.execute()[0]
            except RedisError:
                # Without Redis the limit cannot be shared; keep this worker at the rate alone.
                time.sleep(1.0 / self.per_second)
                return
            if used <= self.budget:
                return
            time.sleep(max(0.001, (slot + 1) * self.window - now))
