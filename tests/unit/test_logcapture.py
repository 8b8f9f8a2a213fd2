"""The log capture used for secret scanning really sees what the functions and the gateway log."""

import logging

from relay_cloud.observability import logger
from tests.logcapture import all_log_output


def test_capture_sees_powertools_and_library_logs_at_production_level():
    with all_log_output() as logs:
        logger.info("powertools line", extra={"value": "secret-a"})
        logging.getLogger("relay_cloud.local.access").info("access line secret-b")
        logging.getLogger("somelib").debug("debug line secret-c")  # below production level
    captured = logs.getvalue()
    assert "secret-a" in captured and "secret-b" in captured and "secret-c" not in captured
