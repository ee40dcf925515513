// Writes an elutq quantized model file: a GGUF v3 file (alignment 64) holding the source model's
// config and tokenizer as standard keys, elutq.* keys describing the quantization, every quantized
// linear layer as one I8 tensor holding its blob (tensor/quantized_matrix_codec.h) and every other tensor
// unchanged. docs/FORMAT.md ("Quantized model file") is the layout.
//
// The tensor directory is fixed at construction from the source and the plan, so data streams out
// with one tensor in memory. Tensors must arrive in model_file_order(source.tensor_names()). Unchanged
// tensors need not be given at all: the writer copies them from the source when a later tensor (or
// finish()) comes. A caller that changes an unchanged tensor (e.g. an AWQ-folded norm) passes it to
// add_unchanged() before any tensor after it in the order.
//
// Typical use:
//   QuantizedFilePlan plan = plan_quantized_file(src, spec, /*quantize_output=*/false);
//   plan.method = "hlq";
//   QuantizedModelWriter w(out_path, src, plan);
//   for (name in model_file_order(src.tensor_names())) if (plan.quantized.count(name))
//     w.add_quantized(name, quantize(...));
//   w.finish();   // until then the file does not exist under out_path
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/model_source.h"
#include "tensor/qformat.h"
#include "tensor/quantized_tensor_sink.h"

namespace elutq {

class GgufWriter;

// The current version of the file layout (elutq.format_version). Readers refuse other versions.
inline constexpr uint32_t kQuantizedFileVersion = 1;

struct QuantizedFilePlan {
  std::map<std::string, QuantSpec> quantized;  // canonical tensor name -> its format
  // Descriptive metadata (elutq.quantization.*, elutq.source.*); empty strings are left out.
  std::string method;       // "rtn", "hlq", "gptq", "hlq-gptq", "awq", "ganq", ...
  std::string fit;          // HLQ fit: "alternating", "gradient", ...
  std::string source_name;  // the source model's path or name
  QuantSpec default_spec;   // the format asked for (per-tensor formats may differ)
  // Further string keys, written as elutq.<key> (e.g. {"calibration.file", "c4.jsonl"}).
  std::vector<std::pair<std::string, std::string>> extra;
  // Unquantized tensors stored in another type than the source's (F32, F16 or BF16): for changed
  // values (add_f32) of a tensor whose source type cannot hold them, e.g. a Q4_1 weight that AWQ
  // scaled but did not quantize.
  std::map<std::string, DType> retyped;
};

// Every decoder linear (tensor/tensor_names.h: is_quantizable_linear) with spec; output.weight too if
// quantize_output. default_spec = spec, source_name empty.
QuantizedFilePlan plan_quantized_file(const ModelSource& src, const QuantSpec& spec,
                                      bool quantize_output);
// For rewriting an elutq quantized model file (finetuning its parameters): every quantized block
// projection of `quantized` planned in its own format, everything else (a quantized output head
// included) copied as stored. Throws Error if the file holds no quantized block projection.
QuantizedFilePlan plan_block_rewrite(const ModelSource& quantized);

class QuantizedModelWriter final : public QuantizedTensorSink {
 public:
  // Declares the whole file. Throws Error if the plan names a tensor the source lacks or that is
  // not a matrix, or a spec is invalid. src must outlive the writer.
  QuantizedModelWriter(const std::string& path, const ModelSource& src,
                       const QuantizedFilePlan& plan);
  ~QuantizedModelWriter() override;  // without finish(): no file is left behind

  // name must be planned as quantized with q's format and shape, and be the next such tensor.
  void add_quantized(const std::string& name, const QuantizedMatrix& q) override;
  // t.name must be an unchanged tensor not yet written, with the source's shape and its stored
  // type (the source's, or the plan's retyped one).
  void add_unchanged(const TensorInfo& t) override;
  // Changed values of an unquantized tensor (like.numel() floats), converted to its stored type
  // (which must be F32, F16 or BF16; see QuantizedFilePlan::retyped).
  void add_f32(const TensorInfo& like, const float* data) override;
  // Copies the remaining unchanged tensors, checks every quantized one came, renames into place.
  void finish();

  // Bytes of the data area (all tensors), known from construction.
  uint64_t data_bytes() const { return data_bytes_; }

 private:
  struct Entry {
    std::string name;
    bool quantized = false;
    QuantSpec spec;
    DType dtype = DType::F32;  // stored type of an unquantized tensor
    uint64_t nbytes = 0;
  };
  // Writes entries_[next_] (unquantized) from floats, converted to its stored type.
  void write_f32_as_stored(const Entry& e, const float* data);
  // Copies unchanged tensors from the source until `name` (or the end, if empty) is next.
  void copy_unchanged_until(const std::string& name);
  // Writes the source tensor t (the next one) as it is, releasing its mapped pages as it goes.
  void copy_from_source(const TensorInfo& t);
  size_t index_of(const std::string& name) const;

  const ModelSource& src_;
  std::unique_ptr<GgufWriter> w_;
  std::vector<Entry> entries_;  // in file order
  std::map<std::string, size_t> index_;
  size_t next_ = 0;  // entries_[next_] is the next tensor to write
  uint64_t data_bytes_ = 0;
};

}  // namespace elutq
