"""Exceptions that carry a message meant for the person who ran the command."""


class CrackModelError(Exception):
    """A user-facing problem: bad input, missing file, wrong configuration.

    The CLI prints the message on one line and exits non-zero, without a traceback.
    The message names the input and says what to do.
    """


class RuntimeChoiceError(CrackModelError):
    """A runtime named for scoring that is unknown, or not approved for the model (the gate's choice)."""


class StoreUnansweredError(Exception):
    """The store did not answer for some objects (not a CrackModelError: retrying is the remedy)."""


# What to do about a file a decoder stopped on (the library's own words come before it).
REUPLOAD = "re-upload the original photo"


class ImageDecodeError(CrackModelError):
    """One image could not be turned into pixels; in a batch it becomes an error row."""


# A MemoryError says nothing of itself ("MemoryError()"): a row says what happened and what to do.
OUT_OF_MEMORY = (
    "the worker ran out of memory; the file is kept: run the batch again, "
    "and if it recurs give the worker more memory or fewer fetch and decode threads"
)


def described(error: BaseException) -> str:
    """``Type: message`` for a row's reason, or what running out of memory means."""
    return OUT_OF_MEMORY if isinstance(error, MemoryError) else f"{type(error).__name__}: {error}"


def unexpected_failure(error: BaseException) -> str:
    """The row reason for an object that hit a fault in our code rather than in its bytes.

    Batches catch it per object (one odd file must not sink the night); the traceback goes to the log.
    """
    if isinstance(error, MemoryError):
        return f"could not be processed: {OUT_OF_MEMORY}"
    return (
        f"could not be processed: unexpected {type(error).__name__} in crack-model ({error}); "
        "the file is kept: report it with the task log to the maintainers"
    )


# S3's answers that mean "not now" rather than "not this object" (besides any 5xx).
# HTTP statuses of "not now": 5xx, and 429 Too Many Requests whatever code comes with it.
_BUSY_STATUSES = frozenset({429, 500, 502, 503, 504})


def store_did_not_answer(error: BaseException) -> bool:
    """Was this a store that did not answer (no connection, a timeout, a download cut short, a 5xx, throttling)
    rather than an object it refused? Requests were retried by botocore, a body cut short was not; either way
    a later attempt may not meet the outage."""
    from botocore import exceptions as boto

    unanswered = (ConnectionError, TimeoutError, boto.HTTPClientError, boto.ConnectionError,
                  boto.IncompleteReadError, boto.FlexibleChecksumError)  # fmt: skip
    if isinstance(error, unanswered):
        return True
    if isinstance(error, boto.ClientError):
        from botocore.retries import standard

        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        # The throttling and transient codes botocore itself retries (RequestThrottled, BandwidthLimitExceeded,
        # PriorRequestNotComplete, ...): each was taken for a refused object, and good photos were never scored.
        context = standard.RetryContext(attempt_number=1, parsed_response=error.response)
        checkers = (standard.ThrottledRetryableChecker(), standard.TransientRetryableChecker())
        return status in _BUSY_STATUSES or any(checker.is_retryable(context) for checker in checkers)
    return False
