"""Structured log lines, attributed to this plugin and the current connection."""

from wit_world.imports import host as _host
from wit_world.imports import types as _types


def trace(message: object) -> None:
    _host.log(_types.LogLevel.TRACE, str(message))


def debug(message: object) -> None:
    _host.log(_types.LogLevel.DEBUG, str(message))


def info(message: object) -> None:
    _host.log(_types.LogLevel.INFO, str(message))


def warn(message: object) -> None:
    _host.log(_types.LogLevel.WARN, str(message))


def error(message: object) -> None:
    _host.log(_types.LogLevel.ERROR, str(message))
