"""Exception types. Input errors subclass ValueError/TypeError so that callers
who already catch those keep working."""


class PcoresetError(Exception):
    """Base class of every error pcoreset raises on purpose."""


class InvalidInputError(PcoresetError, ValueError):
    """An argument has a bad value; the message names the argument and the value."""


class InvalidTypeError(PcoresetError, TypeError):
    """An argument has a bad type or dtype; the message names both."""


class PoolExhaustedError(InvalidInputError):
    """More rows were asked for than the unlabeled pool holds."""

    def __init__(self, available: int, requested: int, what: str = "budget") -> None:
        self.available = int(available)
        self.requested = int(requested)
        super().__init__(
            f"Pool exhausted: {what}={self.requested} but only {self.available} unlabeled rows are available"
        )


class BackendUnavailableError(PcoresetError, RuntimeError):
    """No backend (or not the one asked for) can run this input; `reasons` maps
    each backend to why it was rejected."""

    def __init__(self, message: str, reasons: dict) -> None:
        self.reasons = dict(reasons)
        lines = [message] + [f"  - {name}: {why}" for name, why in self.reasons.items()]
        super().__init__("\n".join(lines))


class OutOfMemoryError(PcoresetError, MemoryError):
    """A selection would need more memory than is available; says how much."""

    def __init__(self, what: str, needed: int, available: int) -> None:
        self.needed = int(needed)
        self.available = int(available)
        super().__init__(
            f"{what} needs {needed / 2**20:.1f} MiB but only {available / 2**20:.1f} MiB are available"
        )


class MissingDependencyError(PcoresetError, ImportError):
    """A feature needs an optional package that is not installed; the message
    names the feature and the extra to install (pip install "pcoreset[torch]")."""


class RankFailureError(PcoresetError, RuntimeError):
    """Distributed selection: another rank died, hung or lost its connection;
    a collective did not complete within the timeout or failed. `phase` says
    where."""

    def __init__(self, message: str, phase: str) -> None:
        self.phase = phase
        super().__init__(message)


class RankMismatchError(InvalidInputError):
    """Distributed selection: ranks passed arguments that must agree but do
    not (budget, C, dtype, from_logits, temperature, labeled_is_global, the
    global labeled list, the rows of a Selector call); the message names the
    ranks and their values."""
