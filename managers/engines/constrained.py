"""Constrained decoding in local mode: a fields answer held to its template's JSON Schema by
xgrammar's Transformers logits processor, as a vLLM server holds it with structured outputs.

A schema is compiled once per load for the model's tokenizer; a logits processor is made for
each ``generate`` call, because it keeps that call's matchers (one per batch row, made at its
first step from the rows it is given) and cannot be reset. The answer is compact JSON
(``any_whitespace=False``): a small model allowed free whitespace between keys can fill
max_tokens with it. The stop tokens are the model's own end-of-sequence tokens, so the
grammar lets the answer end exactly where ``generate`` stops.

The processor works between decode steps, outside the model's forward: it runs the same under
compiled decoding over a static cache as under plain decoding.
"""

from __future__ import annotations

import json
import threading

from models.errors import NotAvailable
from models.i18n import _


class Grammars:
    """The compiled schemas of one loaded model, shared by its views and page threads."""

    def __init__(self):
        self._compiler = None
        self._compiled: dict[str, object] = {}
        self._lock = threading.Lock()

    def processor(self, schema: dict, model, tokenizer):
        """A new logits processor holding one ``generate`` call's rows to ``schema``."""
        try:
            import xgrammar as xgr
            from xgrammar.contrib.hf import LogitsProcessor
        except ImportError:
            raise NotAvailable(_("The fields task in local mode needs xgrammar — install it with: "
                                 "scripts/install.sh --local")) from None
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            if self._compiler is None:
                # The logits' width, which may be padded beyond the tokenizer's vocabulary.
                vocab_size = model.get_output_embeddings().weight.shape[0]
                stops = model.generation_config.eos_token_id
                info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                          stop_token_ids=stops if isinstance(stops, list) else [stops])
                self._compiler = xgr.GrammarCompiler(info)
            if key not in self._compiled:
                self._compiled[key] = self._compiler.compile_json_schema(schema, any_whitespace=False)
            return LogitsProcessor(self._compiled[key])
