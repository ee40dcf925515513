// GGUF writer: round trips through our reader (identical bytes and metadata), streaming in small
// chunks, misuse errors, and removal of the temporary file when finish() is never reached.
// GgufWriter.SampleForReference also writes a file for tests/reference/test_gguf_writer.py.
#include <cstdlib>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "test_util.h"

namespace elutq {
namespace {

struct Blob {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype;
  std::string bytes;
};

std::vector<Blob> sample_tensors() {
  std::mt19937 rng(7);
  auto random_bytes = [&rng](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xff);
    return s;
  };
  std::vector<Blob> v;
  for (auto [name, shape, dtype] : std::vector<std::tuple<std::string, std::vector<int64_t>, DType>>{
           {"f32.weight", {3, 5}, DType::F32},
           {"q4_0.weight", {2, 64}, DType::Q4_0},
           {"q6_k.weight", {256}, DType::Q6_K},
           {"codes.u8", {7}, DType::I8},
           {"idx.i16", {2, 3}, DType::I16},
           {"idx.i32", {1, 2, 3, 4}, DType::I32},
           {"f64.x", {3}, DType::F64},
           {"bf16.weight", {4, 2}, DType::BF16}}) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    const uint64_t nb = dtype_row_bytes(dtype, shape.back()) * (numel / shape.back());
    std::string bytes = random_bytes(nb);
    if (dtype == DType::F32 || dtype == DType::F64) {  // keep floats finite for numpy readers
      for (size_t i = 0; i < bytes.size(); i += (dtype == DType::F32 ? 4 : 8))
        bytes[i + (dtype == DType::F32 ? 3 : 7)] = 0x3f;
    }
    v.push_back({name, shape, dtype, bytes});
  }
  return v;
}

void write_sample(const std::string& path, uint64_t alignment, size_t chunk) {
  GgufWriter w(path, alignment);
  w.set_string("general.architecture", "llama");
  w.set_u8("t.u8", 200);
  w.set_i8("t.i8", -100);
  w.set_u16("t.u16", 60000);
  w.set_i16("t.i16", -30000);
  w.set_u32("t.u32", 4000000000u);
  w.set_i32("t.i32", -2000000000);
  w.set_u64("t.u64", 1ull << 60);
  w.set_i64("t.i64", -(1ll << 60));
  w.set_f32("t.f32", 0.125f);
  w.set_f64("t.f64", -2.5);
  w.set_bool("t.bool", true);
  w.set_string("t.string", "héllo\nworld");
  w.set_string_array("t.strings", {"a b", "", "ĠĠ"});
  w.set_f32_array("t.f32s", {1.0f, -0.5f, 3.25f});
  w.set_i32_array("t.i32s", {-1, 0, 7});
  const uint16_t u16s[] = {1, 65535};
  w.set_array("t.u16s", GgufType::U16, u16s, 2);
  const auto tensors = sample_tensors();
  for (const auto& t : tensors) EXPECT_EQ(w.add_tensor(t.name, t.shape, t.dtype), t.bytes.size());
  w.write_header();
  for (const auto& t : tensors) {
    if (chunk == 0) {
      w.write_tensor(t.name, t.bytes.data(), t.bytes.size());
    } else {
      for (size_t i = 0; i < t.bytes.size(); i += chunk)
        w.write_data(t.bytes.data() + i, std::min(chunk, t.bytes.size() - i));
    }
  }
  w.finish();
}

void check_sample(const std::string& path, uint64_t alignment) {
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.find("t.u8")->type, GgufType::U8);
  EXPECT_EQ(f.get_u32("t.u8"), 200u);
  EXPECT_EQ(f.get_i32("t.i8"), -100);
  EXPECT_EQ(f.get_u32("t.u16"), 60000u);
  EXPECT_EQ(f.get_i32("t.i16"), -30000);
  EXPECT_EQ(f.get_u32("t.u32"), 4000000000u);
  EXPECT_EQ(f.get_i32("t.i32"), -2000000000);
  EXPECT_EQ(f.get_u64("t.u64"), 1ull << 60);
  EXPECT_EQ(f.get_i64("t.i64"), -(1ll << 60));
  EXPECT_EQ(f.get_f32("t.f32"), 0.125f);
  EXPECT_EQ(f.find("t.f64")->type, GgufType::F64);
  EXPECT_EQ(f.get_f32("t.f64"), -2.5f);
  EXPECT_TRUE(f.get_bool("t.bool"));
  EXPECT_EQ(f.get_string("t.string"), "héllo\nworld");
  auto s = f.get_string_array("t.strings");
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0], "a b");
  EXPECT_EQ(s[1], "");
  EXPECT_EQ(s[2], "ĠĠ");
  EXPECT_EQ(f.get_f32_array("t.f32s"), (std::vector<float>{1.0f, -0.5f, 3.25f}));
  EXPECT_EQ(f.get_int_array("t.i32s"), (std::vector<int64_t>{-1, 0, 7}));
  EXPECT_EQ(f.get_int_array("t.u16s"), (std::vector<int64_t>{1, 65535}));
  const auto tensors = sample_tensors();
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = f.tensors()[i];
    EXPECT_EQ(t.name, tensors[i].name);
    EXPECT_EQ(t.shape, tensors[i].shape);
    EXPECT_EQ(t.dtype, tensors[i].dtype);
    ASSERT_EQ(t.nbytes, tensors[i].bytes.size());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(t.data), t.nbytes), tensors[i].bytes)
        << t.name;
    EXPECT_EQ(static_cast<uint64_t>(t.data - f.tensors()[0].data) % alignment, 0u);
  }
}

TEST(GgufWriter, RoundTripWholeTensors) {
  test::TempDir dir;
  write_sample(dir.file("a.gguf"), 32, 0);
  check_sample(dir.file("a.gguf"), 32);
}

TEST(GgufWriter, RoundTripStreamedInChunksWithAlignment64) {
  test::TempDir dir;
  write_sample(dir.file("b.gguf"), 64, 5);  // 5-byte chunks straddle tensor boundaries
  check_sample(dir.file("b.gguf"), 64);
  EXPECT_EQ(std::filesystem::directory_iterator(dir.path()) != std::filesystem::directory_iterator(),
            true);
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);  // no temporary left behind
}

TEST(GgufWriter, UnfinishedWriterLeavesNothing) {
  test::TempDir dir;
  const std::string p = dir.file("c.gguf");
  {
    GgufWriter w(p);
    w.add_tensor("a", {32}, DType::F32);
    w.add_tensor("b", {32}, DType::F32);
    w.write_header();
    std::vector<float> v(32, 1.0f);
    w.write_tensor("a", v.data(), 128);
    EXPECT_THROW(w.finish(), Error);  // b never written
  }
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 0);
}

TEST(GgufWriter, Misuse) {
  test::TempDir dir;
  GgufWriter w(dir.file("d.gguf"));
  w.set_u32("k", 1);
  EXPECT_THROW(w.set_u32("k", 2), Error);                           // key twice
  EXPECT_THROW(w.add_tensor("x", {}, DType::F32), Error);            // no dims
  EXPECT_THROW(w.add_tensor("x", {1, 1, 1, 1, 1}, DType::F32), Error);
  EXPECT_THROW(w.add_tensor("x", {2, 0}, DType::F32), Error);
  EXPECT_THROW(w.add_tensor("x", {2, 16}, DType::Q4_0), Error);      // not whole blocks
  EXPECT_THROW(w.add_tensor("x", {2}, static_cast<DType>(99)), Error);
  w.add_tensor("x", {4}, DType::F32);
  EXPECT_THROW(w.add_tensor("x", {4}, DType::F32), Error);           // name twice
  w.add_tensor("y", {2}, DType::I32);
  EXPECT_THROW(w.write_data("abcd", 4), Error);                      // before the header
  w.write_header();
  EXPECT_THROW(w.set_u32("late", 1), Error);
  EXPECT_THROW(w.add_tensor("late", {4}, DType::F32), Error);
  const float v[4] = {1, 2, 3, 4};
  EXPECT_THROW(w.write_tensor("y", v, 8), Error);                    // out of order
  EXPECT_THROW(w.write_tensor("x", v, 8), Error);                    // wrong size
  w.write_tensor("x", v, 16);
  w.write_data(v, 8);
  EXPECT_THROW(w.write_data(v, 1), Error);                           // past the last tensor
  EXPECT_THROW(GgufWriter(dir.file("e.gguf"), 48), Error);           // alignment
}

// Writes the sample to $ELUTQ_GGUF_WRITER_SAMPLE for the Python reference check (which runs
// this test by name); does nothing otherwise.
TEST(GgufWriter, SampleForReference) {
  const char* out = std::getenv("ELUTQ_GGUF_WRITER_SAMPLE");
  if (!out) GTEST_SKIP() << "ELUTQ_GGUF_WRITER_SAMPLE not set (used by test_gguf_writer.py)";
  write_sample(out, 32, 0);
  check_sample(out, 32);
}

}  // namespace
}  // namespace elutq
