"""Keep secret values out of botocore's DEBUG log lines.

At DEBUG, botocore logs every request's parameters (`botocore.endpoint`: "Making request for ... with params") and
every response body (`botocore.parsers`: "Response body: ..."). For Secrets Manager those carry the secret itself
(`SecretString`, `SecretBinary`), so a Lambda whose log level is DEBUG (e.g. Lambda's advanced logging controls,
which set the root logger's level) would write vault credentials and the model key to CloudWatch. Credentials never
enter a log line (architecture: "Credentials"): `install()` adds a filter to those two loggers that replaces such a
record's message with a redacted one. Other records pass unchanged.
"""

from __future__ import annotations

import logging
import threading

SECRET_FIELDS = ("SecretString", "SecretBinary")
LOGGERS = ("botocore.endpoint", "botocore.parsers")
REDACTED = "[botocore debug record redacted: it carries a Secrets Manager secret value]"

_lock = threading.Lock()


class SecretBodyFilter(logging.Filter):
    """Redacts a record whose formatted message names a Secrets Manager secret-value field."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot format is logging's problem, not ours
            return True
        if any(field in message for field in SECRET_FIELDS):
            record.msg, record.args = REDACTED, None
        return True


def install() -> None:
    """Add the filter to botocore's request and response loggers, once per process."""
    with _lock:
        for name in LOGGERS:
            target = logging.getLogger(name)
            if not any(isinstance(f, SecretBodyFilter) for f in target.filters):
                target.addFilter(SecretBodyFilter())
