"""Every error the store raises. The API maps the reader's errors to HTTP answers in one place
(serving/errors.py); commands report the writer's refusals as one line and exit status 2."""


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """Redis could not be reached, or did not answer in time."""


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
