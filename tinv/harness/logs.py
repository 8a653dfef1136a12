"""Logging at the command line: tinv's own INFO lines, and only warnings from the
libraries under it (open_clip logs each model it builds at INFO, on the root logger;
httpx each hub request). `hydra.verbose=true` (or a logger name) shows everything."""
from __future__ import annotations

import logging

# Loggers, and source folders of libraries that log on the root logger.
THIRD_PARTY = ("open_clip", "timm", "httpx", "httpx2", "httpcore", "urllib3", "huggingface_hub", "filelock",
               "diffusers", "transformers", "wandb", "PIL", "matplotlib", "submitit")


class QuietThirdParty(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        top = record.name.split(".")[0]
        if top == "root":       # a library calling logging.info(): tell it by its file
            return not any(f"/{lib}/" in record.pathname for lib in THIRD_PARTY)
        return top not in THIRD_PARTY


def quiet_third_party() -> None:
    """Install the filter on the root logger's handlers (once); skipped when the root
    logger is at DEBUG, which is what `hydra.verbose=true` sets."""
    root = logging.getLogger()
    if root.level <= logging.DEBUG:
        return
    for handler in root.handlers:
        if not any(isinstance(f, QuietThirdParty) for f in handler.filters):
            handler.addFilter(QuietThirdParty())
