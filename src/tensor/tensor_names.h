// The canonical tensor names of a LLaMA-family model, in one place. Every loader maps its own
// names onto these (GGUF's own scheme: "token_embd.weight", "blk.N.attn_q.weight", ...); the
// model, the quantizer and the file writer only ever use these helpers to build or parse them.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace elutq {

inline constexpr const char* kTokenEmbdName = "token_embd.weight";
inline constexpr const char* kOutputName = "output.weight";
inline constexpr const char* kOutputNormName = "output_norm.weight";

// The projections of one decoder block, in forward order.
enum class LinearSlot { Q, K, V, O, Gate, Up, Down };
inline constexpr int kLinearSlots = 7;
inline constexpr LinearSlot kAllLinearSlots[kLinearSlots] = {
    LinearSlot::Q, LinearSlot::K, LinearSlot::V, LinearSlot::O,
    LinearSlot::Gate, LinearSlot::Up, LinearSlot::Down};

// Canonical tensor stem of a slot: "attn_q", ..., "ffn_down".
const char* linear_slot_name(LinearSlot s);

// "blk.N." and "blk.N.<what>", e.g. block_tensor_name(3, "attn_norm.weight").
std::string block_prefix(int layer);
std::string block_tensor_name(int layer, std::string_view what);
// "blk.N.<slot>.weight".
std::string linear_weight_name(int layer, LinearSlot s);

// N of a "blk.N.<anything>" name, or -1 for every other name.
int block_index(std::string_view name);

// The slot of a "blk.N.<slot>.weight" name, if it is one.
std::optional<LinearSlot> linear_slot_of(std::string_view name);

// The weights the quantizer replaces: every block projection, and the output head if asked.
bool is_quantizable_linear(std::string_view name, bool quantize_output);

// The order tensors are written in (and reach a quantizer's sink): the token embedding, then the
// blocks in ascending order (each block's tensors in the given order), then everything else in
// the given order. Streaming relies on it: a block's tensors are contiguous.
std::vector<std::string> model_file_order(const std::vector<std::string>& names);

}  // namespace elutq
