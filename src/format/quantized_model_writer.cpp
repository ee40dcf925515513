// The elutq quantized model file writer (see quantized_model_writer.h).
#include "format/quantized_model_writer.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "core/fp16.h"
#include "format/dequant.h"
#include "format/gguf_writer.h"
#include "format/model_metadata_gguf.h"
#include "tensor/quantized_matrix_codec.h"
#include "tensor/tensor_names.h"

namespace elutq {
namespace {

bool is_float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

}  // namespace

QuantizedFilePlan plan_quantized_file(const ModelSource& src, const QuantSpec& spec,
                                      bool quantize_output) {
  QuantizedFilePlan plan;
  plan.default_spec = spec;
  for (const std::string& name : src.tensor_names())
    if (is_quantizable_linear(name, quantize_output)) plan.quantized[name] = spec;
  return plan;
}

QuantizedModelWriter::QuantizedModelWriter(const std::string& path, const ModelSource& src,
                                           const QuantizedFilePlan& plan)
    : src_(src), w_(std::make_unique<GgufWriter>(path, 64)) {
  for (const auto& [name, spec] : plan.quantized) {
    const TensorInfo* t = src.find(name);
    require(t != nullptr, "cannot quantize tensor '", name,
            "': the source model has no such tensor");
    require(t->shape.size() == 2, "cannot quantize tensor '", name, "': it has ", t->shape.size(),
            " dimensions, not 2");
    validate_quant_spec(spec);
  }

  GgufWriter& w = *w_;
  w.set_u32("elutq.format_version", kQuantizedFileVersion);
  write_model_metadata(w, src.config(), src.tokenizer());
  if (!plan.source_name.empty()) {
    w.set_string("general.name", plan.source_name);
    w.set_string("elutq.source.name", plan.source_name);
  }
  w.set_string("elutq.source.format", src.format_name());
  if (!plan.method.empty()) w.set_string("elutq.quantization.method", plan.method);
  w.set_string("elutq.quantization.format", plan.default_spec.name());
  w.set_u32("elutq.quantization.bits", uint32_t(plan.default_spec.bits));
  w.set_u32("elutq.quantization.group", uint32_t(plan.default_spec.group));
  if (!plan.fit.empty()) w.set_string("elutq.quantization.fit", plan.fit);
  for (const auto& [k, v] : plan.extra) w.set_string("elutq." + k, v);

  double q_bits = 0, q_weights = 0;
  for (const std::string& name : model_file_order(src.tensor_names())) {
    const TensorInfo* t = src.find(name);
    require(t != nullptr, "the source model lists tensor '", name, "' but does not provide it");
    Entry e;
    e.name = name;
    const auto it = plan.quantized.find(name);
    std::vector<int64_t> logical;  // {rows, cols} of a blob tensor
    if (it != plan.quantized.end()) {
      e.quantized = true;
      e.spec = it->second;
      logical = t->shape;
    } else if (t->dtype == DType::ELUTQ) {  // an already-quantized source tensor, copied as is
      e.spec = inspect_quantized_blob(t->data, t->nbytes).spec;
      e.dtype = DType::ELUTQ;
      logical = t->shape;
    }
    if (!logical.empty()) {
      e.nbytes = quantized_blob_bytes(e.spec, logical[0], logical[1]);
      w.add_tensor(name, {int64_t(e.nbytes)}, DType::I8);
      const std::string key = "elutq.tensor." + name + ".";
      w.set_string(key + "format", e.spec.name());
      w.set_array(key + "shape", GgufType::I64, logical.data(), 2);
      q_bits += e.spec.bits_per_weight(logical[1]) * double(logical[0] * logical[1]);
      q_weights += double(logical[0] * logical[1]);
    } else {
      const auto rt = plan.retyped.find(name);
      e.dtype = rt != plan.retyped.end() ? rt->second : t->dtype;
      require(rt == plan.retyped.end() || is_float_type(e.dtype), "tensor '", name,
              "' can be retyped only to F32, F16 or BF16, not ", dtype_name(e.dtype));
      e.nbytes = w.add_tensor(name, t->shape, e.dtype);
      require(e.dtype != t->dtype || e.nbytes == t->nbytes, "tensor '", name, "' holds ", t->nbytes,
              " bytes; its shape and type need ", e.nbytes);
    }
    data_bytes_ += e.nbytes;
    index_[name] = entries_.size();
    entries_.push_back(std::move(e));
  }
  if (q_weights > 0) w.set_f32("elutq.quantization.bits_per_weight", float(q_bits / q_weights));
  w.write_header();
}

QuantizedModelWriter::~QuantizedModelWriter() = default;  // GgufWriter removes an unfinished file

size_t QuantizedModelWriter::index_of(const std::string& name) const {
  const auto it = index_.find(name);
  require(it != index_.end(), "tensor '", name, "' is not part of the model being written");
  return it->second;
}

void QuantizedModelWriter::copy_from_source(const TensorInfo& t) {
  // In slices, each dropped from the resident set once written: a tensor bigger than the memory
  // budget (a large vocabulary's embedding) streams through without ever being resident whole.
  constexpr uint64_t kSlice = 16ull << 20;
  for (uint64_t off = 0; off < t.nbytes; off += kSlice) {
    const uint64_t n = std::min(kSlice, t.nbytes - off);
    w_->write_data(t.data + off, n);
    TensorInfo part = t;
    part.data = t.data + off;
    part.nbytes = n;
    src_.release_pages(part);
  }
}

void QuantizedModelWriter::copy_unchanged_until(const std::string& name) {
  while (next_ < entries_.size() && entries_[next_].name != name) {
    const Entry& e = entries_[next_];
    require(!e.quantized, "tensor '", e.name, "' must be quantized and written before '",
            name.empty() ? std::string("the end of the file") : name,
            "' (the file stores tensors in model_file_order)");
    const TensorInfo* t = src_.find(e.name);
    if (e.dtype == t->dtype) {
      copy_from_source(*t);
      ++next_;
    } else {  // retyped: through fp32
      std::vector<float> v(size_t(t->numel()));
      tensor_to_f32(*t, v.data());
      write_f32_as_stored(e, v.data());
    }
    src_.release_pages(*t);  // read out of the mapping: need not stay resident (streaming)
  }
}

void QuantizedModelWriter::write_f32_as_stored(const Entry& e, const float* data) {
  const size_t n = e.nbytes / (e.dtype == DType::F32 ? 4 : 2);
  if (e.dtype == DType::F32) {
    w_->write_tensor(e.name, data, e.nbytes);
  } else {
    std::vector<uint16_t> h(n);  // (numel) 16-bit floats
    for (size_t i = 0; i < n; ++i)
      h[i] = e.dtype == DType::F16 ? f32_to_fp16(data[i]) : f32_to_bf16(data[i]);
    w_->write_tensor(e.name, h.data(), e.nbytes);
  }
  ++next_;
}

void QuantizedModelWriter::add_quantized(const std::string& name, const QuantizedMatrix& q) {
  const size_t i = index_of(name);
  const Entry& e = entries_[i];
  require(e.quantized, "tensor '", name, "' is not planned to be quantized");
  require(i >= next_, "tensor '", name, "' was already written");
  const TensorInfo* t = src_.find(name);
  require(q.rows == t->shape[0] && q.cols == t->shape[1], "quantized '", name, "' is ", q.rows, "x",
          q.cols, " but the source tensor is ", t->shape[0], "x", t->shape[1]);
  require(q.spec.name() == e.spec.name(), "quantized '", name, "' has format ", q.spec.name(),
          " but the file declares ", e.spec.name());
  copy_unchanged_until(name);
  const std::vector<uint8_t> blob = encode_quantized_blob(q);
  w_->write_tensor(name, blob.data(), blob.size());
  ++next_;
}

void QuantizedModelWriter::add_unchanged(const TensorInfo& t) {
  const size_t i = index_of(t.name);
  const Entry& e = entries_[i];
  require(!e.quantized, "tensor '", t.name, "' is planned to be quantized, not copied");
  require(i >= next_, "tensor '", t.name, "' was already written (unchanged tensors before a ",
          "quantized one are copied from the source when it comes; add a changed one first)");
  const TensorInfo* s = src_.find(t.name);
  require(t.shape == s->shape && t.dtype == e.dtype && t.nbytes == e.nbytes, "tensor '", t.name,
          "' must keep its shape and stored type (", dtype_name(e.dtype), "), not ",
          dtype_name(t.dtype));
  copy_unchanged_until(t.name);
  if (t.data == s->data)
    copy_from_source(*s);
  else
    w_->write_tensor(t.name, t.data, t.nbytes);
  ++next_;
}

void QuantizedModelWriter::add_f32(const TensorInfo& like, const float* data) {
  const size_t i = index_of(like.name);
  const Entry& e = entries_[i];
  require(!e.quantized, "tensor '", like.name,
          "' is planned to be quantized, not stored as floats");
  require(i >= next_, "tensor '", like.name, "' was already written");
  require(is_float_type(e.dtype), "tensor '", like.name, "' is stored as ", dtype_name(e.dtype),
          ", which cannot hold changed values; declare it in QuantizedFilePlan::retyped as F32, "
          "F16 or BF16");
  copy_unchanged_until(like.name);
  write_f32_as_stored(entries_[next_], data);
}

void QuantizedModelWriter::finish() {
  copy_unchanged_until("");
  w_->finish();
}

QuantizedFilePlan plan_block_rewrite(const ModelSource& quantized) {
  QuantizedFilePlan plan;
  for (const std::string& name : quantized.tensor_names()) {
    const TensorInfo* t = quantized.find(name);
    if (block_index(name) < 0 || !linear_slot_of(name) || t->dtype != DType::ELUTQ) continue;
    plan.quantized[name] = inspect_quantized_blob(t->data, t->nbytes).spec;
    plan.default_spec = plan.quantized[name];
  }
  require(!plan.quantized.empty(), "this ", quantized.format_name(),
          " model holds no quantized block projection to rewrite (quantize it first)");
  return plan;
}

}  // namespace elutq
