"""Deprecated keyword spellings kept working on public functions.

phenoflow spells a thread count ``threads`` everywhere; the older spellings ``n_cpus`` and
``n_threads`` still work on the public functions that had them, with a
:class:`DeprecationWarning` naming the new keyword.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["renamed_keywords"]

P = ParamSpec("P")
R = TypeVar("R")


def renamed_keywords(**renames: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Accept old keyword names as deprecated aliases of new ones.

    Parameters
    ----------
    **renames
        ``old="new"`` pairs: a call passing ``old=value`` warns (:class:`DeprecationWarning`)
        and is forwarded as ``new=value``.

    Returns
    -------
    callable
        A decorator keeping the wrapped function's signature and docstring.

    Raises
    ------
    TypeError
        At call time, when both the old and the new keyword are given.

    Examples
    --------
    >>> @renamed_keywords(n_cpus="threads")
    ... def work(*, threads: int | None = None) -> int | None:
    ...     return threads
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     work(n_cpus=2), caught[0].category.__name__
    (2, 'DeprecationWarning')
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        name = func.__qualname__.removesuffix(".__init__")

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(
                        f"{name}() got both {new!r} and its deprecated spelling {old!r}"
                    )
                warnings.warn(
                    f"{name}(): the keyword {old!r} is deprecated, use {new!r}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper

    return decorate
