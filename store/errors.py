"""Every error the store raises. The API maps the reader's errors to HTTP answers in one place
(serving/errors.py); commands report the writer's refusals as one line and exit status 2."""


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """Redis could not be reached, refused our credentials, or did not answer in time."""

    def __init__(self, message: str, reason: str = "redis_unreachable"):
        super().__init__(message)
        self.reason = reason


def unavailable_reason(exc: BaseException) -> str:
    """Why Redis failed, as a stable code: a wrong password is not an unreachable server."""
    from redis.exceptions import AuthenticationError, NoPermissionError, TimeoutError

    if isinstance(exc, AuthenticationError):
        return "redis_auth_failed"
    if isinstance(exc, NoPermissionError):
        return "redis_permission_denied"
    if isinstance(exc, TimeoutError):
        return "redis_timeout"
    return "redis_unreachable"


class NoCurrentRun(StoreError):
    """Redis answers but nothing has been published yet."""


class StoreDataError(StoreError):
    """A value in Redis does not follow the store contract."""


class UnknownCategory(StoreError):
    """The current run has no popular list for the category asked for."""


class PublishRefused(StoreError):
    """The store refused a publish, rollback or prune; the message says why."""


class UnknownVariant(StoreError):
    """The current run has no lists for the variant asked for."""


class UnknownItem(StoreError):
    """The current run has no list for the item asked for."""
