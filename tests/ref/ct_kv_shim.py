# SPDX-License-Identifier: MIT
"""A shim that lets compressed-tensors 0.20.1 apply a checkpoint's kv_cache_scheme under transformers 5.x.

compressed-tensors finds a cached attention module by a `past_key_value(s)` parameter of its forward;
transformers 5.x renamed it `cache`, so without this shim the library skips the kv_cache_scheme (the
k_scale / v_scale tensors load as UNEXPECTED keys and the KV cache is not quantized). The shim only
widens that test and hands the library's own QuantizedKVCache over under the new name; loading the
scales and quantizing the keys and values (e4m3 of clamp(x / scale)) stay the library's code.
Used by tests/py/test_kv_cache.py and tests/ref/hf_ppl.py --ct-kv-cache.
"""
import contextlib
import inspect


@contextlib.contextmanager
def ct_attention_shim():
    """compressed-tensors 0.20.1 finds a cached attention module by a `past_key_value(s)` parameter of its
    forward; transformers 5.x renamed it `cache`, so without this shim the library skips the
    kv_cache_scheme (the scales load as UNEXPECTED keys and nothing is simulated). The shim only widens
    that test and passes the library's QuantizedKVCache under the new name; the rest is the library's."""
    from compressed_tensors.modeling import kvcache
    from compressed_tensors.quantization.lifecycle import apply, initialize

    def params(module):
        return inspect.signature(module.forward).parameters

    orig_is = initialize.is_cached_attention_module

    def is_cached(module):
        return orig_is(module) or (initialize._is_attention_module(module) and "cache" in params(module) and any(
            hasattr(module, n) for n in initialize._KV_CACHE_PROJECTION_NAMES))

    orig_hook = kvcache._kv_cache_attention_hook

    def hook(module, args, kwargs):
        if "cache" not in params(module):
            return orig_hook(module, args, kwargs)
        c = getattr(module, kvcache.KV_CACHE_ATTR)
        c.add_past_key_values(kwargs.get("cache"))
        kwargs["cache"] = c
        return args, kwargs

    saved = (apply.is_cached_attention_module, initialize.is_cached_attention_module, kvcache._kv_cache_attention_hook)
    apply.is_cached_attention_module = initialize.is_cached_attention_module = is_cached
    kvcache._kv_cache_attention_hook = hook
    try:
        yield
    finally:
        (apply.is_cached_attention_module, initialize.is_cached_attention_module,
         kvcache._kv_cache_attention_hook) = saved
