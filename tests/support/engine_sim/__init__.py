"""The parts of the fake engine (tests/support/fakeengine.py, whose docstring says what it
simulates; that file is the entry point, this package is not run on its own):

  engine.py   FakeEngine: settings, lifecycle, admission and the speed model (queue, prefill, decode)
  routes.py   its HTTP routes: TGI's and OpenAI's generation routes, /health, /info, /v1/models, /metrics
  answers.py  the bodies and server-sent events it answers with, and its errors (TGI's or vLLM's)
  metrics.py  the /metrics page (TGI's names or vLLM's)
  slots.py    BatchSlots: max_batch slots, first come, first served
  cache.py    PrefixCache: an LRU of chained block hashes
  tokens.py   a prompt's tokens and an answer's

Modules import each other relatively, so the package works both as support.engine_sim and, beside
fakeengine.py in the stand-in images (hack/images.py), as engine_sim. Standard library and aiohttp only.
"""

from .answers import BadRequest
from .cache import PrefixCache
from .engine import LOOPBACK, FakeEngine
from .routes import TGI_VERSION
from .slots import BatchSlots
from .tokens import chat_tokens, generated_text, token_text

__all__ = [
    "LOOPBACK",
    "TGI_VERSION",
    "BadRequest",
    "BatchSlots",
    "FakeEngine",
    "PrefixCache",
    "chat_tokens",
    "generated_text",
    "token_text",
]
