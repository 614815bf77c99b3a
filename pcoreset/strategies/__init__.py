"""The paper's six selection strategies on one interface.

    from pcoreset import strategies
    strategy = strategies.get("pcoreset")
    ids = strategy.select(pool, budget, rng=0)   # pool: strategies.PoolState

Every strategy returns dataset-absolute ids (pool.indices) of unlabeled
samples, unique, in its order of preference, and raises PoolExhaustedError
when the budget exceeds the unlabeled count.
"""
from __future__ import annotations

import inspect
from typing import Dict, List, Type

from ..errors import InvalidInputError
from ._common import mixed_probs
from .badge import BadgeStrategy
from .base import PoolState, RngLike, Strategy
from .class_balanced import ClassBalancedStrategy
from .coreset import CoresetStrategy
from .entropy import EntropyStrategy
from .pcoreset_strategy import PCoreSetStrategy
from .random import RandomStrategy

_REGISTRY: Dict[str, Type[Strategy]] = {
    cls.name: cls
    for cls in (RandomStrategy, EntropyStrategy, CoresetStrategy, BadgeStrategy,
                ClassBalancedStrategy, PCoreSetStrategy)
}


def names() -> List[str]:
    """The registered strategy names."""
    return list(_REGISTRY)


def get(name: str, **kwargs) -> Strategy:
    """A new strategy by name, constructed with `kwargs`.

    Raises:
        InvalidInputError: unknown name (the message lists the known ones), or
            a keyword the strategy does not take (lists the ones it does).
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise InvalidInputError(f"unknown strategy {name!r}; known strategies: {', '.join(_REGISTRY)}")
    cls = _REGISTRY[name]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = [p.name for p in inspect.signature(cls.__init__).parameters.values()
              if p.kind in kinds and p.name != "self"]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        takes = ", ".join(params) if params else "no options"
        raise InvalidInputError(f"strategy {name!r} does not take {', '.join(unknown)} (it takes: {takes})")
    return cls(**kwargs)


__all__ = [
    "PoolState",
    "RngLike",
    "Strategy",
    "get",
    "names",
    "mixed_probs",
    "RandomStrategy",
    "EntropyStrategy",
    "CoresetStrategy",
    "BadgeStrategy",
    "ClassBalancedStrategy",
    "PCoreSetStrategy",
]
