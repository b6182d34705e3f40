"""Click option callbacks that run dpkit's argument checks (the command line only; the checks know no click)."""

from __future__ import annotations


def click_callback(check):
    """A click option callback running ``check(param_name, value)``; its error becomes a click.BadParameter.

    Lets every command reuse the checks of :mod:`dpkit.accountants.validation`: ``callback=click_callback(check_positive)``.
    """

    def callback(ctx, param, value):
        import click

        if value is None:
            return None
        try:
            return check(param.name, value)
        except (ValueError, TypeError) as err:
            raise click.BadParameter(str(err), param=param) from None

    return callback
