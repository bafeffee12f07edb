"""Every error localevents raises, in one tree.

::

    LocalEventsError
    ├── ConfigurationError (ValueError)      a setting or argument that cannot work
    ├── InvalidEventError (ValueError)       an event breaks a rule of the protocol        422
    │   └── EventTooLarge                    its compact JSON is over the size limit       422
    ├── InvalidRequestError (ValueError)     a malformed body, filter or parameter         422
    │   └── TooManyBuckets                   a count-by that would make > 1000 buckets     422
    ├── InvalidPageToken (ValueError)        a garbled, tampered or foreign page token     403
    ├── AuthenticationError                  a missing or wrong API key                    401
    ├── RequestTooLarge                      a body over the configured maximum            413
    ├── StorageError                         the database failed
    │   ├── DatabaseInUseError               another process holds the events file
    │   └── SchemaVersionError               the file's schema version cannot be used here
    ├── ServiceUnavailable                   the store is not ready or overloaded          503
    ├── QueryTimeout                         a query ran past the server's time limit      504
    ├── ServerUnreachable (SDK)              nothing answers at the server's URL (also an
    │                                        httpx.ConnectError)
    └── HTTPStatusError                      an error answer, as the SDK sees it
        └── (one subclass per class above, e.g. HTTPAuthenticationError)

Server-side classes carry their HTTP status as ``status_code``; the server answers each with
that status and a ``detail`` message, and the SDK maps an error answer back to an
:class:`HTTPStatusError` subclass that is also an instance of the matching class above, so
``except InvalidEventError`` works the same in-process and over the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import httpx

__all__ = (
    "AuthenticationError",
    "ConfigurationError",
    "DatabaseInUseError",
    "EventTooLarge",
    "HTTPStatusError",
    "InvalidEventError",
    "InvalidPageToken",
    "InvalidRequestError",
    "LocalEventsError",
    "QueryTimeout",
    "RequestTooLarge",
    "SchemaVersionError",
    "ServerUnreachable",
    "ServiceUnavailable",
    "StorageError",
    "TooManyBuckets",
    "domain_error",
)


class LocalEventsError(Exception):
    """The root of every localevents error."""

    status_code: ClassVar[int] = 500


class ConfigurationError(LocalEventsError, ValueError):
    """A setting or argument that cannot work."""


class InvalidEventError(LocalEventsError, ValueError):
    """An event breaks a rule of the protocol (a missing label, a limit, a bad field)."""

    status_code = 422


class EventTooLarge(InvalidEventError):
    """An event whose compact JSON is over ``LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES``
    (refused by ``emit_event`` before sending, or by the server)."""

    def __init__(self, size: int, maximum: int, message: str | None = None) -> None:
        super().__init__(
            message
            or f"Event is too large to emit ({size} > {maximum} bytes, the limit set by "
            "LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES)"
        )
        self.size = size
        self.maximum = maximum


class InvalidRequestError(LocalEventsError, ValueError):
    """A request body, filter or parameter that cannot be understood."""

    status_code = 422


class TooManyBuckets(InvalidRequestError):
    """A count-by whose range and interval would produce more than the bucket limit."""


class InvalidPageToken(LocalEventsError, ValueError):
    """A page token that is garbled, tampered with or was not issued by this store."""

    status_code = 403


class AuthenticationError(LocalEventsError):
    """A request without the configured API key, or with a wrong one."""

    status_code = 401


class RequestTooLarge(LocalEventsError):
    """A request body above ``LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES``."""

    status_code = 413


class StorageError(LocalEventsError):
    """The database failed."""


class DatabaseInUseError(StorageError):
    """Another process holds the events file open."""

    def __init__(self, path: str, pid: int | None) -> None:
        holder = f"PID {pid}" if pid is not None else "another process"
        super().__init__(
            f"the events file {path} is in use by {holder}: if that is a server, point "
            "LOCALEVENTS_API_URL at it; otherwise wait until it ends, or use another database"
        )
        self.path = path
        self.pid = pid


class SchemaVersionError(StorageError):
    """An events file whose schema version this localevents cannot use as it is: a newer
    one (upgrade localevents), or an older one opened read-only (open it read-write once)."""

    def __init__(self, message: str, *, found: int, supported: int) -> None:
        super().__init__(message)
        self.found = found
        self.supported = supported


class ServiceUnavailable(LocalEventsError):
    """The store is not ready, shutting down or overloaded; retry later."""

    status_code = 503


class QueryTimeout(LocalEventsError):
    """A query ran past the server's time limit (``LOCALEVENTS_SERVER_QUERY_TIMEOUT``) and
    was stopped. Not retried: the same query would take as long again; narrow it."""

    status_code = 504


class ServerUnreachable(LocalEventsError):
    """The SDK could not connect to the server's URL: nothing listens there, the address is
    wrong, or the network failed. Raised at once by a client that has never connected (a
    wrong URL, most likely), else after its retries. Raised as an instance of
    ``httpx.ConnectError`` too."""


class HTTPStatusError(LocalEventsError):
    """An error answer from a localevents (or Prefect) server, in one readable line.

    The message holds the method, URL, status and the server's own explanation.
    """

    def __init__(self, message: str, *, request: httpx.Request, response: httpx.Response) -> None:
        # Not super(): subclasses mix in domain classes whose __init__ takes other arguments.
        Exception.__init__(self, message)
        self.request = request
        self.response = response

    @property
    def status(self) -> int:
        """The HTTP status code of the answer."""
        return self.response.status_code


def domain_error(error: BaseException | None) -> LocalEventsError | None:
    """The localevents error that ``error`` is, or that it wraps: found inside the exception
    groups and causes a framework wraps it in (an app's failed start-up, say), so that the
    reason can be told in its own one line rather than as a traceback."""
    if error is None or isinstance(error, LocalEventsError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = domain_error(inner)
            if found is not None:
                return found
    return domain_error(error.__cause__)
