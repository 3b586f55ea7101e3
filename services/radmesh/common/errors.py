"""Errors that carry their meaning to every edge: gRPC status codes and CLI exits.

Cores raise these; ``server.py`` adapters turn them into a gRPC status with the
message, the CLI prints the message on one line and exits non-zero. Anything else
escaping a core is a bug and is reported as INTERNAL without its details.
"""

from __future__ import annotations

import grpc


class RadmeshError(Exception):
    """Base of the errors a user can act on. ``str(e)`` is the whole message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    exit_code: int = 1


class InvalidInputError(RadmeshError, ValueError):
    """The request or file itself is wrong (bad grid, bad dtype, corrupt file, ...)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    exit_code = 2


class FailedPreconditionError(RadmeshError):
    """The request is well formed but the system is not in a state to answer it."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    exit_code = 3


class ResourceExhaustedError(RadmeshError):
    """A size limit was exceeded (volume too large, too many chunks)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    exit_code = 4


class UnavailableError(RadmeshError):
    """A dependency (another service, Triton) cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE
    exit_code = 5


class NotFoundError(RadmeshError):
    """What the request names does not exist (or no longer does: an expired session)."""

    code = grpc.StatusCode.NOT_FOUND
    exit_code = 3


class DeadlineExceededError(RadmeshError):
    """The request's deadline ran out before the work was done."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    exit_code = 5


class CancelledError(RadmeshError):
    """The client went away before the work was done."""

    code = grpc.StatusCode.CANCELLED
    exit_code = 1


class UnauthenticatedError(RadmeshError):
    """The call carried no valid credentials (a missing or wrong bearer token)."""

    code = grpc.StatusCode.UNAUTHENTICATED
    exit_code = 77  # sysexits EX_NOPERM
