// Findings of the fuzz targets (fuzz/README.md), each fed through the entry point its target
// calls. The inputs are the fuzz/corpus/<target>/regress-* files, which every fuzz run replays
// under clang's sanitizers too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "format/dequant.h"
#include "format/safetensors_file.h"
#include "tensor/quantized_matrix_codec.h"
#include "test_util.h"
#include "tokenizer/tokenizer_files.h"

namespace elutq {
namespace {

std::string regression_input(const std::string& target, const std::string& name) {
  const std::string path = std::string(ELUTQ_SOURCE_DIR) + "/fuzz/corpus/" + target + "/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing " << path;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A blob's bytes at a 64-byte aligned address, as a model file holds them.
struct AlignedBlob {
  explicit AlignedBlob(const std::string& bytes) : size(bytes.size()) {
    void* p = nullptr;
    if (::posix_memalign(&p, 64, size) != 0) std::abort();
    data.reset(static_cast<uint8_t*>(p));
    std::memcpy(p, bytes.data(), size);
  }
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data;
  size_t size;
};

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Every fp16 bit pattern survives fp16 -> fp32 -> fp16; NaNs used to come back as 0x7E00 / 0xFE00
// whatever their payload.
TEST(FuzzRegressions, EveryFp16BitPatternRoundTripsThroughFp32) {
  int wrong = 0;
  for (uint32_t h = 0; h < 0x10000; ++h) wrong += f32_to_fp16(fp16_to_f32(uint16_t(h))) != h;
  EXPECT_EQ(wrong, 0);
  // Computed NaNs (payload in the low float bits only) still give the quiet fp16 NaN.
  EXPECT_EQ(f32_to_fp16(std::nanf("")), 0x7E00);
  EXPECT_EQ(f32_to_fp16(-std::nanf("")), 0xFE00);
  EXPECT_EQ(f32_to_fp16(INFINITY), 0x7C00);
}

// fuzz_quantized_blob: a GANQ blob whose codebook holds 0xFFFF (a NaN) re-encoded with another
// NaN, so decode(encode(decode(blob))) differed from decode(blob).
TEST(FuzzRegressions, BlobWithNanParametersReencodesToItself) {
  const AlignedBlob b(regression_input("fuzz_quantized_blob", "regress-nan-params"));
  const QuantizedMatrix q = decode_quantized_blob(b.data.get(), b.size);
  const std::vector<uint8_t> again = encode_quantized_blob(q);
  ASSERT_EQ(again.size(), b.size);
  EXPECT_EQ(std::memcmp(again.data(), b.data.get(), b.size), 0);
}

// fuzz_quantized_blob: decoding a 4-bit HLQC blob formed the pointer k + B past the end of its
// 3-element ratio-code array (undefined behaviour; clang's UBSan reports it, GCC's does not).
TEST(FuzzRegressions, FourBitHlqcBlobDecodes) {
  const AlignedBlob b(regression_input("fuzz_quantized_blob", "regress-hlqc-w4-ratio-codes"));
  const QuantizedMatrix q = decode_quantized_blob(b.data.get(), b.size);
  EXPECT_EQ(q.spec.kind, QuantKind::HLQC);
  EXPECT_EQ(q.spec.bits, 4);
  EXPECT_EQ(q.ratio_codes.size(), size_t(q.rows) * q.spec.groups_per_row(q.cols) * 3);
  const std::vector<uint8_t> again = encode_quantized_blob(q);
  ASSERT_EQ(again.size(), b.size);
  EXPECT_EQ(std::memcmp(again.data(), b.data.get(), b.size), 0);
}

// fuzz_quantized_blob: an HLQC blob with a non-zero byte in the padding of its ratio codes decodes
// to the same matrix as the blob without it and re-encodes with zero padding (the codec's header
// used to promise encode(decode(blob)) == blob for every blob).
TEST(FuzzRegressions, BlobPaddingIsIgnoredAndReencodedAsZeros) {
  const AlignedBlob padded(regression_input("fuzz_quantized_blob", "regress-nonzero-padding"));
  const AlignedBlob clean(regression_input("fuzz_quantized_blob", "hlqc_w3g32_attn_q"));
  ASSERT_EQ(padded.size, clean.size);
  ASSERT_NE(std::memcmp(padded.data.get(), clean.data.get(), clean.size), 0);
  const QuantizedMatrix a = decode_quantized_blob(padded.data.get(), padded.size);
  const QuantizedMatrix b = decode_quantized_blob(clean.data.get(), clean.size);
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.ratio_codes, b.ratio_codes);
  EXPECT_TRUE(same_floats(a.params, b.params));
  EXPECT_TRUE(same_floats(a.ratio_codebook, b.ratio_codebook));
  const std::vector<uint8_t> again = encode_quantized_blob(a);
  EXPECT_EQ(std::memcmp(again.data(), clean.data.get(), clean.size), 0);
}

// fuzz_hf_tokenizer: a value of an unexpected JSON type ("type": 1) escaped as nlohmann's
// type_error instead of an Error naming the file.
TEST(FuzzRegressions, TokenizerJsonValueOfTheWrongTypeIsAnError) {
  test::TempDir dir;
  std::ofstream(dir.file("tokenizer.json"), std::ios::binary)
      << regression_input("fuzz_hf_tokenizer", "regress-json-type-error");
  const std::string msg = test::error_of([&] { load_hf_tokenizer(dir.path()); });
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("type must be string"), std::string::npos) << msg;
}

// fuzz_hf_tokenizer: one vocabulary entry with id 16777215 made a 66-byte file allocate 16M token
// strings (700 MB) before finding that ids 0.. were missing; the id is now refused at once.
TEST(FuzzRegressions, TokenizerJsonIdPastTheEntriesIsRefusedAtOnce) {
  test::TempDir dir;
  std::ofstream(dir.file("tokenizer.json"), std::ios::binary)
      << regression_input("fuzz_hf_tokenizer", "regress-huge-token-id");
  const std::string msg = test::error_of([&] { load_hf_tokenizer(dir.path()); });
  EXPECT_NE(msg.find("has id 16777215 outside 0..0"), std::string::npos) << msg;
}

// A safetensors file with a [0, 0] tensor: rows() divided numel() by the last dimension, 0 / 0
// (UBSan: division by zero); an empty matrix has 0 rows of 0 columns and converts to nothing.
TEST(FuzzRegressions, ZeroByZeroSafetensorsTensorHasNoRows) {
  const std::string bytes = regression_input("fuzz_safetensors", "regress-zero-by-zero-shape");
  const test::TempDir dir;
  const std::string path = dir.file("model.safetensors");
  {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
  }
  try {
    const SafetensorsFile f(path);
    for (const TensorInfo& t : f.tensors()) {
      if (t.numel() == 0) {
        EXPECT_EQ(t.rows() * t.cols(), 0) << t.name;
      }
      std::vector<float> out(size_t(t.numel()) + 1);
      tensor_to_f32(t, out.data());
    }
  } catch (const Error&) {
    // refusing the file is fine too; only a crash or UB is not
  }
  TensorInfo t;
  t.shape = {0, 0};
  EXPECT_EQ(t.rows(), 0);
  EXPECT_EQ(t.cols(), 0);
  t.shape = {3, 0};
  EXPECT_EQ(t.rows(), 3);
  t.shape = {0};
  EXPECT_EQ(t.rows(), 1);
  t.shape = {};
  EXPECT_EQ(t.rows(), 1);
  t.shape = {2, 3, 4};
  EXPECT_EQ(t.rows(), 6);
}

}  // namespace
}  // namespace elutq
