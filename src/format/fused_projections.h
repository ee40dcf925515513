// Fused projection matrices split into the canonical per-projection tensors. Phi-3 stores q/k/v as
// one matrix and gate/up as another; the model, the quantizer and the writer only know the
// canonical LLaMA tensors (model/model_source.h). A fused matrix's parts are contiguous row ranges,
// so each part is a view of the fused tensor's bytes in the mapped file: nothing is copied, and
// every stored type (F32, F16, BF16, GGML blocks) works, because a row is a whole number of blocks.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tensor/tensor_info.h"
#include "tensor/model_config.h"
#include "tensor/tensor_names.h"

namespace elutq {

// Intermediate canonical names a loader gives fused tensors before split_fused_projections:
//   blk.N.attn_qkv.weight      (n_heads*head_dim + 2*n_kv_heads*head_dim, dim)  q rows, k, v
//   blk.N.ffn_gate_up.weight   (2*hidden_dim, dim)                               gate rows, up
constexpr const char* kFusedQkvSuffix = "attn_qkv.weight";
constexpr const char* kFusedGateUpSuffix = "ffn_gate_up.weight";

// The fused suffix whose tensor holds slot s in such checkpoints; nullptr for o and down.
const char* fused_suffix_of(LinearSlot s);

// Rows [row_begin, row_begin + rows) of a 2-D tensor, named name, pointing into t's bytes.
TensorInfo tensor_row_view(const TensorInfo& t, const std::string& name, int64_t row_begin,
                           int64_t rows);

// Where a split tensor came from, for messages: the fused tensor and the row range.
struct FusedOrigin {
  std::string fused_name;
  int64_t row_begin = 0, row_end = 0;
};

// Replaces, in place and in file order, every fused tensor of `tensors` (the names above) by its
// canonical parts (attn_q/attn_k/attn_v, ffn_gate/ffn_up), and returns each part's origin. Throws
// Error naming `where` and the tensor if a fused tensor's shape is not the one the config implies,
// or if a part is also stored on its own; stored_as, if it has the fused name, says how the file
// names that tensor (e.g. "'model.layers.0.self_attn.qkv_proj.weight' in 'x.safetensors'").
std::map<std::string, FusedOrigin> split_fused_projections(
    std::vector<TensorInfo>& tensors, const ModelConfig& c, const std::string& where,
    const std::map<std::string, std::string>& stored_as = {});

}  // namespace elutq
