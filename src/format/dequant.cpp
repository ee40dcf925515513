// Dequantization of the GGML block types to fp32, written from the public GGUF/GGML format
// description. Each type is one row of a trait table: its block struct (size static_assert'd
// against the specification) and a function that expands one block. Arithmetic is done in fp32 in
// the order the reference (the `gguf` Python package) uses, so results match it bit for bit.
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "format/dequant.h"
#include "tensor/quantized_matrix_codec.h"
#include "tensor/tensor_info.h"

namespace elutq {
namespace {

using f16 = uint16_t;  // raw IEEE half, converted with fp16_to_f32

// ---- block structs (all fields little-endian, packed as in the file) ------------------------

struct BlockQ4_0 {  // 32 weights: w = d * (q - 8), q 4-bit; low nibbles first half, high second
  f16 d;
  uint8_t qs[16];
};
struct BlockQ4_1 {  // 32 weights: w = d * q + m
  f16 d, m;
  uint8_t qs[16];
};
struct BlockQ5_0 {  // 32 weights: w = d * (q - 16), q = nibble | fifth bit from qh
  f16 d;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ5_1 {  // 32 weights: w = d * q + m
  f16 d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ8_0 {  // 32 weights: w = d * q, q int8
  f16 d;
  int8_t qs[32];
};
struct BlockQ2_K {  // 256 weights in 16 groups of 16: w = d*sc*q - dmin*m, q 2-bit
  uint8_t scales[16];  // low nibble: scale, high nibble: min
  uint8_t qs[64];
  f16 d, dmin;
};
struct BlockQ3_K {  // 256 weights in 16 groups of 16: w = d*(sc-32)*(q-4*(!hbit)), 6-bit scales
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  f16 d;
};
struct BlockQ4_K {  // 256 weights in 8 groups of 32: w = d*sc*q - dmin*m, 6-bit sc and m
  f16 d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
struct BlockQ5_K {  // as Q4_K with a fifth bit per weight in qh
  f16 d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6_K {  // 256 weights in 16 groups of 16: w = d*sc*(q-32), q 6-bit, sc int8
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  f16 d;
};
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// Blocks in the file are not aligned to their struct's alignment; copy each one out first.
template <typename B>
B load(const uint8_t* p) {
  B b;
  std::memcpy(&b, p, sizeof(B));
  return b;
}

float h(f16 x) { return fp16_to_f32(x); }

// ---- one function per type: expands n_blocks consecutive blocks --------------------------------

void deq_f32(const uint8_t* src, int64_t n, float* y) { std::memcpy(y, src, n * 4); }

void deq_f16(const uint8_t* src, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, src + 2 * i, 2);
    y[i] = fp16_to_f32(v);
  }
}

void deq_bf16(const uint8_t* src, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, src + 2 * i, 2);
    y[i] = bf16_to_f32(v);
  }
}

void deq_q4_0(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockQ4_0>(src + i * sizeof(BlockQ4_0));
    const float d = h(b.d);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 0xF) - 8) * d;
      y[j + 16] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void deq_q4_1(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockQ4_1>(src + i * sizeof(BlockQ4_1));
    const float d = h(b.d), m = h(b.m);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(b.qs[j] & 0xF) + m;
      y[j + 16] = d * static_cast<float>(b.qs[j] >> 4) + m;
    }
  }
}

// Fifth bits of a Q5 block: bit j of qh (as a little-endian u32) belongs to weight j.
uint32_t q5_high(const uint8_t qh[4]) {
  return uint32_t{qh[0]} | uint32_t{qh[1]} << 8 | uint32_t{qh[2]} << 16 | uint32_t{qh[3]} << 24;
}

void deq_q5_0(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockQ5_0>(src + i * sizeof(BlockQ5_0));
    const float d = h(b.d);
    const uint32_t qh = q5_high(b.qh);
    for (int j = 0; j < 16; ++j) {
      const int lo = (b.qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int hi = (b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = static_cast<float>(lo - 16) * d;
      y[j + 16] = static_cast<float>(hi - 16) * d;
    }
  }
}

void deq_q5_1(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockQ5_1>(src + i * sizeof(BlockQ5_1));
    const float d = h(b.d), m = h(b.m);
    const uint32_t qh = q5_high(b.qh);
    for (int j = 0; j < 16; ++j) {
      const int lo = (b.qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int hi = (b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * static_cast<float>(lo) + m;
      y[j + 16] = d * static_cast<float>(hi) + m;
    }
  }
}

void deq_q8_0(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockQ8_0>(src + i * sizeof(BlockQ8_0));
    const float d = h(b.d);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(b.qs[j]);
  }
}

void deq_q2_k(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockQ2_K>(src + i * sizeof(BlockQ2_K));
    const float d = h(b.d), dmin = h(b.dmin);
    // Weight 128*half + 32*k + l (k = 0..3, l = 0..31) is bits 2k..2k+1 of qs[32*half + l];
    // its group of 16 is 8*half + 2*k + l/16.
    for (int half = 0; half < 2; ++half) {
      const uint8_t* q = b.qs + 32 * half;
      for (int k = 0; k < 4; ++k) {
        for (int g = 0; g < 2; ++g) {
          const uint8_t sc = b.scales[8 * half + 2 * k + g];
          const float dl = d * static_cast<float>(sc & 0xF);
          const float ml = dmin * static_cast<float>(sc >> 4);
          for (int l = 16 * g; l < 16 * g + 16; ++l)
            *y++ = dl * static_cast<float>((q[l] >> (2 * k)) & 3) - ml;
        }
      }
    }
  }
}

// Q3_K's 16 six-bit scales packed in 12 bytes: low 4 bits of scale s in byte s (s < 8, low nibble)
// or byte s-8 (high nibble); high 2 bits in byte 8 + s%4 at bit 2*(s/4).
void q3k_scales(const uint8_t sc[12], int out[16]) {
  for (int s = 0; s < 16; ++s) {
    const int lo = s < 8 ? (sc[s] & 0xF) : (sc[s - 8] >> 4);
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    out[s] = (lo | hi << 4) - 32;
  }
}

void deq_q3_k(const uint8_t* src, int64_t nb, float* y) {
  int scales[16];
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockQ3_K>(src + i * sizeof(BlockQ3_K));
    const float d = h(b.d);
    q3k_scales(b.scales, scales);
    // Same bit placement as Q2_K; the third bit of weight 128*half + 32*k + l is bit 4*half + k
    // of hmask[l], and a clear bit subtracts 4.
    for (int half = 0; half < 2; ++half) {
      const uint8_t* q = b.qs + 32 * half;
      for (int k = 0; k < 4; ++k) {
        const int hbit = 4 * half + k;
        for (int g = 0; g < 2; ++g) {
          const float dl = d * static_cast<float>(scales[8 * half + 2 * k + g]);
          for (int l = 16 * g; l < 16 * g + 16; ++l) {
            const int v = ((q[l] >> (2 * k)) & 3) - (((b.hmask[l] >> hbit) & 1) ? 0 : 4);
            *y++ = dl * static_cast<float>(v);
          }
        }
      }
    }
  }
}

// Q4_K/Q5_K's 8 six-bit scales and mins packed in 12 bytes.
void k4_scale_min(int j, const uint8_t q[12], int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void deq_q4_k(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockQ4_K>(src + i * sizeof(BlockQ4_K));
    const float d = h(b.d), dmin = h(b.dmin);
    // Groups 2p and 2p+1 are the low and high nibbles of qs[32p .. 32p+31].
    for (int p = 0; p < 4; ++p) {
      const uint8_t* q = b.qs + 32 * p;
      for (int g = 0; g < 2; ++g) {
        int sc, m;
        k4_scale_min(2 * p + g, b.scales, &sc, &m);
        const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l)
          *y++ = dl * static_cast<float>(g ? q[l] >> 4 : q[l] & 0xF) - ml;
      }
    }
  }
}

void deq_q5_k(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockQ5_K>(src + i * sizeof(BlockQ5_K));
    const float d = h(b.d), dmin = h(b.dmin);
    // As Q4_K; the fifth bit of weight l of group j is bit j of qh[l].
    for (int p = 0; p < 4; ++p) {
      const uint8_t* q = b.qs + 32 * p;
      for (int g = 0; g < 2; ++g) {
        const int j = 2 * p + g;
        int sc, m;
        k4_scale_min(j, b.scales, &sc, &m);
        const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) {
          const int v = (g ? q[l] >> 4 : q[l] & 0xF) | (((b.qh[l] >> j) & 1) << 4);
          *y++ = dl * static_cast<float>(v) - ml;
        }
      }
    }
  }
}

void deq_q6_k(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 256) {
    const auto b = load<BlockQ6_K>(src + i * sizeof(BlockQ6_K));
    const float d = h(b.d);
    // Each half of 128 weights uses ql[64*half ..], qh[32*half ..] and scales[8*half ..]:
    // weight 32*k + l (k = 0..3) takes its low nibble from ql[l + 32*(k&1)] (high nibble for
    // k >= 2) and its top two bits from bits 2k..2k+1 of qh[l]; its scale is 2k + l/16.
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = b.ql + 64 * half;
      const uint8_t* qh = b.qh + 32 * half;
      const int8_t* sc = b.scales + 8 * half;
      float* yh = y + 128 * half;
      for (int k = 0; k < 4; ++k) {
        for (int l = 0; l < 32; ++l) {
          const uint8_t lowbyte = ql[l + 32 * (k & 1)];
          const int lo = k < 2 ? (lowbyte & 0xF) : (lowbyte >> 4);
          const int q = (lo | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
          yh[32 * k + l] = d * static_cast<float>(sc[2 * k + l / 16]) * static_cast<float>(q);
        }
      }
    }
  }
}

// ---- the trait table ----------------------------------------------------------------------------

struct DequantRow {
  DType type;
  void (*to_f32)(const uint8_t* src, int64_t n_blocks, float* dst);
};

constexpr DequantRow kDequant[] = {
    {DType::F32, deq_f32},   {DType::F16, deq_f16},   {DType::BF16, deq_bf16},
    {DType::Q4_0, deq_q4_0}, {DType::Q4_1, deq_q4_1}, {DType::Q5_0, deq_q5_0},
    {DType::Q5_1, deq_q5_1}, {DType::Q8_0, deq_q8_0}, {DType::Q2_K, deq_q2_k},
    {DType::Q3_K, deq_q3_k}, {DType::Q4_K, deq_q4_k}, {DType::Q5_K, deq_q5_k},
    {DType::Q6_K, deq_q6_k},
};

const DequantRow& dequant_row(const TensorInfo& t) {
  for (const auto& r : kDequant)
    if (r.type == t.dtype) return r;
  fail("tensor '", t.name, "' has type ", dtype_name(t.dtype),
       ", which cannot be converted to fp32");
}

}  // namespace

void tensor_rows_to_f32(const TensorInfo& t, int64_t row_begin, int64_t row_end, float* dst) {
  if (t.dtype == DType::ELUTQ) {  // our quantized blobs carry their own format
    try {
      quantized_blob_rows_to_f32(t.data, t.nbytes, row_begin, row_end, dst);
    } catch (const Error& e) {
      fail("tensor '", t.name, "': ", e.what());
    }
    return;
  }
  const DequantRow& r = dequant_row(t);
  const int64_t cols = t.cols(), rows = t.rows();
  require(row_begin >= 0 && row_begin <= row_end && row_end <= rows, "tensor '", t.name,
          "': rows [", row_begin, ", ", row_end, ") are outside its ", rows, " rows");
  const uint64_t row_bytes = dtype_row_bytes(t.dtype, cols);
  require(t.data != nullptr && t.nbytes >= row_bytes * static_cast<uint64_t>(rows), "tensor '",
          t.name, "' holds ", t.nbytes, " bytes, less than its shape needs");
  const int64_t blocks = cols / dtype_block_elems(t.dtype);
  for (int64_t i = row_begin; i < row_end; ++i)
    r.to_f32(t.data + static_cast<uint64_t>(i) * row_bytes, blocks, dst + (i - row_begin) * cols);
}

void tensor_to_f32(const TensorInfo& t, float* dst) { tensor_rows_to_f32(t, 0, t.rows(), dst); }

}  // namespace elutq
