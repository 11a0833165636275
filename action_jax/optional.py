"""Optional packages: what runs instead when one is missing, said once per process."""
import functools
import logging

logger = logging.getLogger(__name__)


@functools.cache
def note_missing(package: str, instead: str) -> None:
    """Log once that `package` is not installed and what is done `instead`."""
    logger.warning('%s is not installed: %s (pip install \'action_jax[%s]\' to use it)',
                   package, instead, package)
