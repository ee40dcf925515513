// StoredLinear: threaded GEMV on the stored rows for one token, converted slabs + sgemm for
// several.
#include "model/stored_linear.h"

#include <cblas.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "format/dequant.h"
#include "kernels/gemv.h"
#include "model/gemm.h"

namespace elutq {

namespace {
constexpr int64_t kSlabRows = 256;   // rows converted per sgemm: 256 x 576 fp32 = 576 KiB
constexpr int64_t kGemvTokens = 64;  // up to this many tokens: a GEMV per token (see forward)
constexpr int64_t kGemvChunkBytes = 32 << 10;  // rows a GEMV pass reads for all tokens (in L1/L2)

// Layers' rows in units of four, layer after layer (layer i's are first_unit[i] ..
// first_unit[i+1]), over the pool: run(layer, r0, r1, its output) for each part of a thread's
// range.
template <class Run>
void run_units(ThreadPool& pool, const StoredLinear* const* ls, size_t count,
               const int64_t* first_unit, Run&& run, std::span<float* const> ys) {
  pool.run(first_unit[count], [&](int, int64_t u0, int64_t u1) {
    for (size_t i = 0; i < count; ++i) {
      const int64_t b = std::max(u0, first_unit[i]), e = std::min(u1, first_unit[i + 1]);
      if (b >= e) continue;
      const int64_t out = ls[i]->out_features();
      run(*ls[i], (b - first_unit[i]) * 4, std::min(out, (e - first_unit[i]) * 4), ys[i]);
    }
  });
}

// n tokens' activations x (n, in) rounded to int16 per 32 columns (quantize_activations_i16),
// with each block's sum where with_sums (the 32-weight kernels need them, rows16 does not), one
// token per pool item, into buffers of the calling thread's own.
BlockActivations16 int16_activations(const float* x, int64_t n, int64_t in, bool with_sums,
                                     ThreadPool& pool) {
  const int64_t nb = in / 32;
  thread_local std::vector<int16_t> xq;
  thread_local std::vector<float> xd;
  thread_local std::vector<int32_t> xs;
  xq.resize(size_t(n * in));
  xd.resize(size_t(n * nb));
  xs.resize(with_sums ? size_t(n * nb) : 0);
  int16_t* q = xq.data();
  float* d = xd.data();
  int32_t* s = with_sums ? xs.data() : nullptr;
  pool.run(n, [&](int, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      quantize_activations_i16(x + t * in, in, q + t * in, d + t * nb);
      if (s) block_sums_i16(q + t * in, in, s + t * nb);
    }
  });
  return {q, d, s, in, int(n)};
}
}  // namespace

bool StoredLinear::supports(const TensorInfo& w) {
  if (w.shape.size() != 2 || w.shape[0] <= 0 || w.shape[1] <= 0) return false;
  if (active_kquant_kernel(w.dtype) != nullptr) return w.shape[1] % kQK == 0;
  if (active_block32_kernel(w.dtype) != nullptr) return w.shape[1] % 32 == 0;
  return (w.dtype == DType::Q8_0 && w.shape[1] % 32 == 0) || w.dtype == DType::F16 ||
         w.dtype == DType::BF16;
}

StoredLinear::StoredLinear(const TensorInfo& w)
    : w_(w), out_(w.shape.size() == 2 ? w.shape[0] : 0), in_(w.shape.size() == 2 ? w.shape[1] : 0) {
  require(
      supports(w), "tensor '", w.name, "' (", dtype_name(w.dtype),
      ") cannot run as a stored-type layer: expected a Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 / IQ4_NL "
      "(rows a multiple of 32), F16, BF16, or Q4_K / Q5_K / Q6_K / IQ4_XS (rows a multiple of 256) matrix");
  row_bytes_ = dtype_row_bytes(w.dtype, in_);
  require(w.data != nullptr && w.nbytes >= row_bytes_ * uint64_t(out_), "tensor '", w.name,
          "' holds ", w.nbytes, " bytes, less than its ", out_, "x", in_, " ", dtype_name(w.dtype),
          " shape needs (truncated or corrupt file?)");
  // The slab path calls sgemm from every pool thread: OpenBLAS must not thread inside them (with
  // no DenseLinear in the model nothing else would have said so).
  blas_single_threaded();
  kquant_kernel_ = active_kquant_kernel(w.dtype);
  block32_kernel_ = active_block32_kernel(w.dtype);
  if (w.dtype == DType::Q8_0) rows16_kernel_ = active_q8_rows16_kernel();
  if (rows16_kernel_) {
    rows16_.resize(size_t(q8_rows16_bytes(out_, in_)));
    q8_rows16_pack(w.data, out_, in_, rows16_.data());
  }
}

std::string StoredLinear::describe() const {
  std::string t = dtype_name(w_.dtype);
  std::transform(t.begin(), t.end(), t.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return t + " " + std::to_string(out_) + "x" + std::to_string(in_) +
         ((rows16_kernel_ || block32_kernel_) ? " (int16 activations)"
          : kquant_kernel_                    ? " (int8 activations)"
                                              : "");
}

void StoredLinear::forward(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  const int64_t in = in_, out = out_;
  // The 32-weight block types take the integer kernel up to kGemvTokens tokens (decode, a server
  // step) and the converted slabs + sgemm below for a prompt, where OpenBLAS's fp32 product is the
  // faster of the two on 576-wide rows (docs/notes/2026-12-07-kquant-native.md).
  if (kquant_kernel_ || (block32_kernel_ && n <= kGemvTokens)) {
    const Linear* self = this;
    float* ys[1] = {y};
    forward_together(std::span(&self, 1), x, n, std::span(ys), pool);
    return;
  }
  if (rows16_kernel_) {
    const int64_t nb = in / 32;
    const BlockActivations16 a = int16_activations(x, n, in, false, pool);
    const int16_t* q = a.q;
    const float* d = a.d;
    // Tokens in blocks of kGemvTokens, whose activations stay in cache while the rows stream by.
    pool.run((out + kRows16 - 1) / kRows16, [&](int, int64_t g0, int64_t g1) {
      for (int64_t t0 = 0; t0 < n; t0 += kGemvTokens) {
        const int tn = int(std::min(kGemvTokens, n - t0));
        rows16_kernel_(rows16_.data(), out, in, q + t0 * in, d + t0 * nb, tn, g0, g1, y + t0 * out,
                       out);
      }
    });
    return;
  }
  // Up to kGemvTokens tokens: GEMV rows (each token's result that of a GEMV alone); converting
  // slabs pays off only when many tokens share them (see docs/RESULTS.md, section "LUT kernels",
  // "SmolLM2's output head on its Q8_0 blocks").
  if (n <= kGemvTokens) {
    // A few rows at a time for every token, so each row is read from memory once and widened once
    // (Q8_0) for all of them: a server's decode step has one token per active request.
    const int64_t chunk = std::max<int64_t>(1, kGemvChunkBytes / int64_t(row_bytes_));
    pool.run(out, [&](int, int64_t r0, int64_t r1) {
      for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
        const int64_t c1 = std::min(r1, c0 + chunk);
        gemv_rows_stored_tokens(w_.dtype, w_.data, x, in, int(n), c0, c1, y, out);
      }
    });
    return;
  }
  // Each thread: y[:, r0:r1] = x (n, in) * W[r0:r1, :]^T, a slab of rows at a time (leading
  // dimension out), like DenseLinear but with the slab converted to fp32 first.
  const int64_t units = (out + 15) / 16;
  pool.run(units, [&](int, int64_t u0, int64_t u1) {
    thread_local std::vector<float> slab;  // grows once per thread, then reused
    slab.resize(size_t(kSlabRows * in));
    for (int64_t r0 = u0 * 16, end = std::min(out, u1 * 16); r0 < end; r0 += kSlabRows) {
      const int64_t r1 = std::min(end, r0 + kSlabRows);
      tensor_rows_to_f32(w_, r0, r1, slab.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(r1 - r0), int(in), 1.0f, x,
                  int(in), slab.data(), int(in), 0.0f, y + r0, int(out));
    }
  });
}

bool StoredLinear::forward_together(std::span<const Linear* const> layers, const float* x,
                                    int64_t n, std::span<float* const> ys, ThreadPool& pool) const {
  constexpr size_t kMaxLayers = 4;
  const bool k256 = kquant_kernel_ != nullptr;
  if ((!k256 && !block32_kernel_) || layers.size() > kMaxLayers || layers.size() != ys.size())
    return false;
  if (!k256 && n > kGemvTokens) return false;  // a prompt: each on its slabs + sgemm (forward)
  const StoredLinear* ls[kMaxLayers];
  int64_t first_unit[kMaxLayers + 1] = {0};  // units of four rows, layer after layer
  for (size_t i = 0; i < layers.size(); ++i) {
    ls[i] = dynamic_cast<const StoredLinear*>(layers[i]);
    if (!ls[i] || (k256 ? !ls[i]->kquant_kernel_ : !ls[i]->block32_kernel_) || ls[i]->in_ != in_)
      return false;
    first_unit[i + 1] = first_unit[i] + (ls[i]->out_ + 3) / 4;
  }
  const int64_t in = in_;
  const size_t count = layers.size();
  if (k256) {
    // The activations rounded to int8 per 256 columns, with their scales and 16-sums.
    const int64_t nb = in / kQK;
    thread_local std::vector<int8_t> xq;
    thread_local std::vector<float> xd;
    thread_local std::vector<int16_t> xs;
    xq.resize(size_t(n * in));
    xd.resize(size_t(n * nb));
    xs.resize(size_t(n * in / 16));
    int8_t* q = xq.data();
    float* d = xd.data();
    int16_t* s = xs.data();
    pool.run(n, [&](int, int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        quantize_activations_q8k(x + t * in, in, q + t * in, d + t * nb, s + t * (in / 16));
    });
    const Q8KActivations a{q, d, s, in, int(n)};
    run_units(
        pool, ls, count, first_unit,
        [&](const StoredLinear& l, int64_t r0, int64_t r1, float* y) {
          l.kquant_kernel_(l.w_.data, a, r0, r1, y, l.out_);
        },
        ys);
  } else {
    // The activations rounded to int16 per 32 columns, with their scales and block sums.
    const BlockActivations16 a = int16_activations(x, n, in, true, pool);
    run_units(
        pool, ls, count, first_unit,
        [&](const StoredLinear& l, int64_t r0, int64_t r1, float* y) {
          l.block32_kernel_(l.w_.data, a, r0, r1, y, l.out_);
        },
        ys);
  }
  return true;
}

}  // namespace elutq
