"""Click option callbacks that run dpkit's argument checks (the checks themselves know no click)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def click_callback(check: Callable[[str, Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click option callback running ``check(param_name, value)``; its error becomes a click.BadParameter.

    Lets every command reuse dpkit's checks (e.g. :mod:`dpkit.accountants.validation`):
    ``callback=click_callback(check_positive)``. A missing value (``None``) is passed through unchecked.
    """

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(str(param.name), value)
        except (ValueError, TypeError) as err:
            raise click.BadParameter(str(err), param=param) from None

    return callback
