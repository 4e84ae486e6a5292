"""``autointerp plan``: count what an explain and score run will cost before it runs, and compare a
finished run's actual totals with its plan."""

from .plan import Plan, make_plan
from .tokenizer import PromptTokenizer, load_tokenizer

__all__ = ["Plan", "PromptTokenizer", "load_tokenizer", "make_plan"]
