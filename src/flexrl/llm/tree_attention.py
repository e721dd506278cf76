"""The attention implementation of every loaded model: transformers' sdpa, made cheap for the tree pass.

Importing this module registers ``flexrl_tree_sdpa`` with transformers (attention and mask interfaces).
"""

from __future__ import annotations

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

TREE_ATTENTION = "flexrl_tree_sdpa"


def tree_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """SDPA that keeps grouped key/value heads unexpanded under the tree pass's float mask.

    transformers' ``sdpa`` repeats every key/value head ``num_key_value_groups``
    times whenever a mask is given (a copy per layer), and a boolean mask is
    converted to a float one inside each call. The tree pass therefore builds
    its additive float mask once, and here torch's native grouped-query
    attention reads the shared heads in place. Every other call (``generate``,
    plain forwards: boolean or no mask) goes to transformers' ``sdpa`` as is.
    """
    if (
        isinstance(attention_mask, torch.Tensor)
        and attention_mask.is_floating_point()
        and not dropout
        and not kwargs.get("output_attentions")
        and query.shape[1] % key.shape[1] == 0
    ):
        output = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, scale=scaling, enable_gqa=query.shape[1] != key.shape[1]
        )
        return output.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


AttentionInterface.register(TREE_ATTENTION, tree_sdpa_attention)
AttentionMaskInterface.register(TREE_ATTENTION, sdpa_mask)
