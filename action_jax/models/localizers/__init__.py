"""Temporal action proposal models (MMAction2's localizers): BMN, and BSN's TEM and PEM."""
from action_jax.models.localizers.bmn import BMN, BMNOutput
from action_jax.models.localizers.bsn import PEM, TEM

LOCALIZERS: dict[str, type] = {'BMN': BMN, 'TEM': TEM, 'PEM': PEM}

__all__ = ['BMN', 'BMNOutput', 'LOCALIZERS', 'PEM', 'TEM']
