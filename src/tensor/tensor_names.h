// Questions about canonical tensor names (tensor/model_source.h lists them) that loaders, the
// quantizers and the model-file writer all ask, so they live below all of them.
#pragma once

#include <string>

namespace elutq {

// True for the linear layers quantization replaces: blk.N.{attn_q, attn_k, attn_v, attn_output,
// ffn_gate, ffn_up, ffn_down}.weight, and output.weight only if quantize_output (the paper keeps
// lm_head at higher precision).
bool is_quantizable_linear(const std::string& name, bool quantize_output);

}  // namespace elutq
