"""aonode.engine.wasm.transform: rewriting an image's bytes with Binaryen before wasmtime compiles it.

Each product is made once per image and kept on disk, keyed by the input's sha256.

- exnref.py    legacy try/catch → exnref, so wasmtime runs older AOS builds.
- variant.py   an image's fast variant: Asyncify's state read as "normal", memory64 lowered when it
               fits in 4 GiB, -O3, an interrupt-flag check at every loop header.
- wasm_opt.py  finding and running wasm-opt (AONODE_WASM_OPT, the checkout's npm copy, PATH).
"""

from aonode.engine.wasm.transform.exnref import needs_translation, translate as translate_exnref
from aonode.engine.wasm.transform.variant import (
    INTERRUPT_EXPORT,
    Variant,
    add_interrupt_checks,
    fast_variant,
    fold_asyncify_state,
)
from aonode.engine.wasm.transform.wasm_opt import default_cache_dir, find_wasm_opt

__all__ = [
    "INTERRUPT_EXPORT",
    "Variant",
    "add_interrupt_checks",
    "default_cache_dir",
    "fast_variant",
    "find_wasm_opt",
    "fold_asyncify_state",
    "needs_translation",
    "translate_exnref",
]
