"""
Tests for dd0c_route.metering.interfaces: the real token counter and price
table provide the seams the meter, routing and providers are typed against.
"""

from __future__ import annotations

from decimal import Decimal

from zope.interface.verify import verifyObject

from dd0c_route.metering.interfaces import IPriceTable, ITokenCounter
from dd0c_route.metering.prices import Prices
from dd0c_route.metering.tokens import TokenCounter


def test_token_counter_provides_itokencounter() -> None:
    """
    ``TokenCounter`` declares and fully implements ``ITokenCounter``, and
    counts through it.
    """
    counter = TokenCounter()
    assert verifyObject(ITokenCounter, counter)
    assert counter.count_text("gpt-4o", "hello world") == 2
    assert counter.count_prompt("gpt-4o", [{"role": "user", "content": "hello world"}]) > 2


def test_price_table_provides_ipricetable() -> None:
    """
    ``Prices`` (the dataset with overrides) declares and fully implements ``IPriceTable``;
    an unknown model is priced ``None`` through the interface, a known one
    exactly.
    """
    table = Prices.load()
    assert verifyObject(IPriceTable, table)
    assert table.price_for("no-such-model-xyz") is None
    assert table.cost_usd("no-such-model-xyz", 1, 1) is None
    cost = table.cost_usd("gpt-4o-mini", 1_000_000, 0)
    assert isinstance(cost, Decimal) and cost > 0
