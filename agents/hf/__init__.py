"""Local Hugging Face checkpoints as a ``ChatModel`` (transformers, in-process,
generation on a worker thread). Needs the ``train`` extra (torch, transformers)."""

from ._model import HFChatModel

__all__ = ["HFChatModel"]
