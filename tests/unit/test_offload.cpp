// Streaming quantization pieces: memory measurement and size parsing, the activation store (in
// memory and spilled to disk), block checkpoints and the resume work directory, lazy block loading
// of the runtime model, and the synthetic model writer.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/memory_usage.h"
#include "format/gguf_file.h"
#include "format/synthetic_model.h"
#include "model/model.h"
#include "quant/activation_store.h"
#include "quant/resume.h"
#include "quant/resume_checkpoint.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "test_util.h"

namespace elutq {
namespace {

namespace fs = std::filesystem;
using test::error_of;

TEST(MemoryUsage, ParsesSizes) {
  EXPECT_EQ(parse_byte_size("512M"), 512ull << 20);
  EXPECT_EQ(parse_byte_size("2G"), 2ull << 30);
  EXPECT_EQ(parse_byte_size("1.5GiB"), 3ull << 29);
  EXPECT_EQ(parse_byte_size("1073741824"), 1073741824ull);
  EXPECT_EQ(parse_byte_size("100kb"), 102400ull);
  EXPECT_EQ(parse_byte_size(" 3 MB "), 3ull << 20);
  EXPECT_EQ(parse_byte_size("1t"), 1ull << 40);
  EXPECT_EQ(parse_byte_size("0"), 0ull);
  for (const char* bad : {"", "abc", "-1G", "12X", "1.5.2G", "G", "5 GiBs", "1e30G"}) {
    const std::string msg = error_of([&] { parse_byte_size(bad); });
    EXPECT_NE(msg.find("bad size '" + std::string(bad) + "'"), std::string::npos)
        << "'" << bad << "' gave: " << msg;
  }
  EXPECT_EQ(format_byte_size(1536ull << 20), "1.50 GiB");
  EXPECT_EQ(format_byte_size(900), "900 B");
}

TEST(MemoryUsage, RssFollowsTouchedMemory) {
  const uint64_t before = current_rss_bytes();
  ASSERT_GT(before, 0u) << "no /proc/self/status VmRSS";
  constexpr size_t kBytes = 64u << 20;
  std::vector<char> big(kBytes);
  for (size_t i = 0; i < kBytes; i += 4096) big[i] = char(i);  // touch every page
  const uint64_t during = current_rss_bytes();
  EXPECT_GE(during, before + kBytes * 3 / 4);
  EXPECT_GE(peak_rss_bytes(), during);
}

TEST(MemoryUsage, AvailableMemoryIsReadWhereLinuxReportsIt) {
  if (!std::ifstream("/proc/meminfo")) GTEST_SKIP() << "no /proc/meminfo on this system";
  const uint64_t avail = available_memory_bytes();
  EXPECT_GT(avail, uint64_t(1) << 20);  // some memory is available to the test itself
  EXPECT_LT(avail, uint64_t(1) << 50);  // and it is bytes, not a misread field
}

// release_pages drops a touched file mapping from the resident set; the bytes stay readable.
TEST(MemoryUsage, ReleasedFilePagesLeaveTheResidentSet) {
  test::TempDir dir;
  const std::string path = dir.file("blob.bin");
  constexpr size_t kBytes = 48u << 20;
  {
    std::vector<uint8_t> data(kBytes);
    for (size_t i = 0; i < kBytes; ++i) data[i] = uint8_t(i * 2654435761u >> 24);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), kBytes);
  }
  MappedFile f(path);
  uint64_t sum = 0;
  for (size_t i = 0; i < kBytes; i += 4096) sum += f.data()[i];
  const uint64_t touched = current_rss_bytes();
  f.release_pages(f.data(), kBytes);
  const uint64_t released = current_rss_bytes();
  EXPECT_LE(released + kBytes * 3 / 4, touched) << "touched " << touched << " released " << released;
  uint64_t sum2 = 0;
  for (size_t i = 0; i < kBytes; i += 4096) sum2 += f.data()[i];
  EXPECT_EQ(sum, sum2);
  for (size_t i : {size_t(0), size_t(12345), kBytes - 1})
    EXPECT_EQ(f.data()[i], uint8_t(i * 2654435761u >> 24));
  // Ranges outside the mapping are ignored, not an error.
  std::vector<uint8_t> heap(100, 7);
  f.release_pages(heap.data(), heap.size());
  EXPECT_EQ(heap[50], 7);
}

std::vector<float> random_seq(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 3.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = nd(rng);
  return v;
}

TEST(ActivationStore, InMemoryAndSpilledReadBackExactly) {
  test::TempDir dir;
  const int64_t N = 5, L = 7, D = 24;
  ActivationStore mem(N, L, D, 1ull << 30, dir.path());
  ActivationStore disk(N, L, D, 0, dir.file("scratch"));
  EXPECT_FALSE(mem.spilled());
  EXPECT_TRUE(disk.spilled());
  EXPECT_EQ(disk.total_bytes(), uint64_t(N * L * D * 4));
  // The scratch file is unlinked at once: nothing is left in its folder.
  EXPECT_TRUE(fs::is_empty(dir.file("scratch")));
  for (int64_t i = 0; i < N; ++i) {
    const auto x = random_seq(L * D, uint32_t(i));
    mem.put(i, x.data());
    disk.put(i, x.data());
  }
  std::vector<float> a(size_t(L * D)), b(size_t(L * D));
  for (int64_t i = N - 1; i >= 0; --i) {  // any order
    const auto x = random_seq(L * D, uint32_t(i));
    mem.get(i, a.data());
    disk.get(i, b.data());
    EXPECT_EQ(0, std::memcmp(a.data(), x.data(), a.size() * 4)) << i;
    EXPECT_EQ(0, std::memcmp(b.data(), x.data(), b.size() * 4)) << i;
  }
  // Overwriting one sequence leaves the others alone.
  const auto y = random_seq(L * D, 99);
  disk.put(2, y.data());
  disk.get(2, b.data());
  EXPECT_EQ(0, std::memcmp(b.data(), y.data(), b.size() * 4));
  disk.get(3, b.data());
  EXPECT_EQ(0, std::memcmp(b.data(), random_seq(L * D, 3).data(), b.size() * 4));
  EXPECT_NE(error_of([&] { disk.get(N, b.data()); }).find("out of range"), std::string::npos);
}

// Overwrites n bytes at off of a file with their complement.
void corrupt(const std::string& path, std::streamoff off, int n = 1) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  for (int i = 0; i < n; ++i) {
    f.seekg(off + i);
    const char c = char(f.get());
    f.seekp(off + i);
    f.put(char(~c));
  }
}

TEST(ActivationStore, CheckpointRoundTripAndRejectsMismatches) {
  test::TempDir dir;
  const int64_t N = 3, L = 4, D = 32;
  ActivationStore src(N, L, D, 0, dir.path());  // spilled
  for (int64_t i = 0; i < N; ++i) src.put(i, random_seq(L * D, uint32_t(10 + i)).data());
  const std::string path = dir.file("acts.bin");
  save_activations(src, path);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  ActivationStore dst(N, L, D, 1ull << 30, dir.path());  // in memory
  load_activations(path, dst);
  std::vector<float> a(size_t(L * D));
  for (int64_t i = 0; i < N; ++i) {
    dst.get(i, a.data());
    EXPECT_EQ(0, std::memcmp(a.data(), random_seq(L * D, uint32_t(10 + i)).data(), a.size() * 4));
  }
  ActivationStore other(N, L + 1, D, 1ull << 30, dir.path());
  EXPECT_NE(error_of([&] { load_activations(path, other); }).find("expected 3 x 5 x 32"),
            std::string::npos);
  fs::resize_file(path, fs::file_size(path) - 4);
  EXPECT_NE(error_of([&] { load_activations(path, dst); }).find("truncated"), std::string::npos);
  EXPECT_NE(error_of([&] { load_activations(dir.file("missing.bin"), dst); }).find("cannot open"),
            std::string::npos);
}

// A damaged activation file must not become wrong inputs for the next block (a flipped exponent
// bit once surfaced as "Hessian: non-finite diagonal", a flipped mantissa bit as nothing at all):
// every single damaged float, and the checksum itself, give an error that says how to start over.
TEST(ActivationStore, DamagedCheckpointIsAnError) {
  test::TempDir dir;
  const int64_t N = 2, L = 3, D = 8;
  ActivationStore src(N, L, D, 1ull << 30, dir.path());
  for (int64_t i = 0; i < N; ++i) src.put(i, random_seq(L * D, uint32_t(20 + i)).data());
  const std::string path = dir.file("acts.bin");
  const int64_t header = 32, floats = N * L * D;
  for (int64_t at : {int64_t(0), floats / 2, floats - 1}) {
    save_activations(src, path);
    corrupt(path, header + at * 4 + 1);  // a mantissa byte of one float
    ActivationStore dst(N, L, D, 1ull << 30, dir.path());
    const std::string msg = error_of([&] { load_activations(path, dst); });
    EXPECT_NE(msg.find("damaged (checksum mismatch)"), std::string::npos) << at << ": " << msg;
    EXPECT_NE(msg.find("--restart"), std::string::npos) << msg;
  }
  save_activations(src, path);
  corrupt(path, header + floats * 4 + 3);  // the stored checksum
  ActivationStore dst(N, L, D, 1ull << 30, dir.path());
  EXPECT_NE(error_of([&] { load_activations(path, dst); }).find("checksum mismatch"),
            std::string::npos);
  // A file of the earlier layout (no checksum) is refused, not read as raw floats.
  save_activations(src, path);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(7);
    f.put('1');
  }
  EXPECT_NE(error_of([&] { load_activations(path, dst); }).find("earlier elutq"),
            std::string::npos);
}

// Random codes and fp16 parameters in a format; HLQC with a codebook, ratio codes and the
// parameters they expand to.
QuantizedMatrix random_qmatrix(const std::string& format, int64_t rows, int64_t cols,
                               uint32_t seed) {
  std::mt19937 rng(seed);
  QuantizedMatrix q;
  q.spec = parse_quant_spec(format);
  q.rows = rows;
  q.cols = cols;
  const int B = q.spec.bits;
  q.codes.resize(size_t(rows * cols));
  for (auto& c : q.codes) c = uint8_t(rng() & ((1u << B) - 1));
  const int64_t groups = q.spec.kind == QuantKind::Codebook ? rows
                                                            : rows * q.spec.groups_per_row(cols);
  q.params.resize(size_t(groups * q.spec.params_per_group()));
  for (auto& p : q.params) p = float(int(rng() % 2000) - 1000) / 64.0f;
  if (q.spec.kind == QuantKind::HLQC) {
    for (int i = 0; i < (B - 1) * kHlqcRatios; ++i)
      q.ratio_codebook.push_back(float(2 << (i / kHlqcRatios)) * (0.75f + 0.03125f * (i % 16)));
    q.ratio_codes.resize(size_t(groups * (B - 1)));
    for (auto& k : q.ratio_codes) k = uint8_t(rng() % kHlqcRatios);
    for (int64_t g = 0; g < groups; ++g) {
      float* p = q.params.data() + g * (B + 1);
      hlqc_expand(B, p[0], p[B], q.ratio_codes.data() + g * (B - 1), q.ratio_codebook.data(), p);
    }
  }
  return q;
}

// A quantized tensor of every format (both blob layouts), an fp32 and an unchanged one.
BlockCheckpoint sample_checkpoint() {
  BlockCheckpoint cp;
  uint32_t seed = 0;
  for (const char* format : {"hlq-w1g16", "hlq-w3g16", "hlqc-w1g16", "hlqc-w3g16", "hlqc-w4grow",
                             "uniform-w2g16", "uniform-w8g16", "codebook-w3", "codebook-w8"}) {
    CheckpointTensor t;
    t.name = std::string("blk.0.") + format;
    t.q = random_qmatrix(format, 5, 37, ++seed);
    cp.tensors.push_back(t);
  }
  CheckpointTensor f;
  f.name = "blk.0.attn_norm.weight";
  f.kind = CheckpointTensor::Kind::F32;
  f.shape = {3, 4};
  f.data = random_seq(12, 5);
  cp.tensors.push_back(f);
  CheckpointTensor u;
  u.name = "blk.0.ffn_norm.weight";
  u.kind = CheckpointTensor::Kind::Unchanged;
  cp.tensors.push_back(u);
  cp.notes = "line one\nline two";
  return cp;
}

void expect_same(const BlockCheckpoint& a, const BlockCheckpoint& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const CheckpointTensor &x = a.tensors[i], &y = b.tensors[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.kind, y.kind);
    EXPECT_EQ(x.q.spec.name(), y.q.spec.name());
    EXPECT_EQ(x.q.rows, y.q.rows);
    EXPECT_EQ(x.q.cols, y.q.cols);
    EXPECT_EQ(x.q.codes, y.q.codes) << x.name;
    EXPECT_EQ(x.q.params, y.q.params) << x.name;
    EXPECT_EQ(x.q.ratio_codes, y.q.ratio_codes) << x.name;
    EXPECT_EQ(x.q.ratio_codebook, y.q.ratio_codebook) << x.name;
    EXPECT_EQ(x.shape, y.shape);
    EXPECT_EQ(x.data, y.data);
  }
  EXPECT_EQ(a.notes, b.notes);
}

TEST(Resume, CheckpointRoundTripsAndDetectsDamage) {
  test::TempDir dir;
  const BlockCheckpoint cp = sample_checkpoint();
  const std::string path = dir.file("block.ckpt");
  write_block_checkpoint(path, cp);
  expect_same(cp, read_block_checkpoint(path));
  // Flip one byte in the middle: the checksum catches it.
  corrupt(path, 40);
  EXPECT_NE(error_of([&] { read_block_checkpoint(path); }).find("damaged"), std::string::npos);
  fs::resize_file(path, 10);
  EXPECT_NE(error_of([&] { read_block_checkpoint(path); }).find("not an elutq block checkpoint"),
            std::string::npos);
}

// A work directory of an elutq whose checkpoints kept no HLQC ratio codes (layout ELUTQCK1) is
// refused with a way out rather than resumed into a different file.
TEST(Resume, CheckpointOfTheEarlierLayoutIsRefused) {
  test::TempDir dir;
  const std::string path = dir.file("block-0.ckpt");
  write_block_checkpoint(path, sample_checkpoint());
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(7);
    f.put('1');
  }
  const std::string msg = error_of([&] { read_block_checkpoint(path); });
  EXPECT_NE(msg.find("checkpoint of an earlier elutq"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--restart"), std::string::npos) << msg;
}

RunManifest manifest(const std::string& bits) {
  RunManifest m;
  m.set("source", "model.gguf size=123");
  m.set("method", "gptq");
  m.set("bits", bits);
  return m;
}

TEST(Resume, WorkDirFindsFinishedBlocksAndRefusesOtherSettings) {
  test::TempDir dir;
  const std::string out = dir.file("out.elutq");
  const int64_t N = 2, L = 3, D = 8;
  ActivationStore acts(N, L, D, 0, dir.path());
  {
    ResumeDir rd(out, manifest("2"), 4);
    EXPECT_EQ(rd.finished_blocks(), 0);
    EXPECT_TRUE(fs::exists(out + ".elutq-work/manifest.txt"));
    for (int l = 0; l < 2; ++l) {
      for (int64_t i = 0; i < N; ++i) acts.put(i, random_seq(L * D, uint32_t(100 * l + i)).data());
      rd.save_block(l, sample_checkpoint(), &acts);
    }
    EXPECT_EQ(rd.finished_blocks(), 2);
    // Only the newest activations are kept.
    EXPECT_FALSE(fs::exists(rd.path() + "/acts-0.bin"));
    EXPECT_TRUE(fs::exists(rd.path() + "/acts-1.bin"));
    EXPECT_NE(error_of([&] { rd.save_block(3, sample_checkpoint(), &acts); }).find("out of order"),
              std::string::npos);
  }
  // "Killed" while writing block 2: its activations landed, its checkpoint did not.
  save_activations(ActivationStore(N, L, D, 0, dir.path()),
                   dir.file("out.elutq.elutq-work/acts-2.bin"));
  {
    ResumeDir rd(out, manifest("2"), 4);
    EXPECT_EQ(rd.finished_blocks(), 2);
    expect_same(sample_checkpoint(), rd.load_block(1));
    ActivationStore back(N, L, D, 1ull << 30, dir.path());
    rd.load_activations(back);
    std::vector<float> x(size_t(L * D));
    back.get(1, x.data());
    EXPECT_EQ(x, random_seq(L * D, 101));
  }
  const std::string msg = error_of([&] { ResumeDir rd(out, manifest("3"), 4); });
  EXPECT_NE(msg.find("bits was '2' in the interrupted run and is '3' now"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("--restart"), std::string::npos) << msg;
  {
    ResumeDir rd(out, manifest("2"), 4);
    rd.remove();
  }
  EXPECT_FALSE(fs::exists(out + ".elutq-work"));
  ResumeDir fresh(out, manifest("3"), 4);
  EXPECT_EQ(fresh.finished_blocks(), 0);
}

// A small synthetic model: the writer's file opens as a LLaMA model, and a lazy-block model (one
// block in memory at a time, embeddings read on demand) computes bit for bit what the eager one
// does.
TEST(SyntheticModel, OpensAndLazyBlocksMatchTheEagerModel) {
  test::TempDir dir;
  const std::string path = dir.file("synth.gguf");
  SyntheticModelOptions so;
  so.dim = 128;
  so.n_layers = 3;
  so.hidden_dim = 352;
  so.vocab_size = 400;
  so.n_kv_heads = 1;
  write_synthetic_model(path, so);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  GgufFile g(path);
  uint64_t data = 0;
  for (const auto& t : g.tensors()) data += t.nbytes;
  EXPECT_EQ(data, synthetic_model_bytes(so));
  auto src = open_model(path);
  const ModelConfig& c = src->config();
  EXPECT_EQ(c.n_layers, 3);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.vocab_size, 400);
  EXPECT_EQ(src->tokenizer().tokens.size(), 400u);
  EXPECT_EQ(src->find("blk.1.ffn_down.weight")->dtype, DType::F16);

  const std::vector<int> toks = {1, 300, 17, 399, 5, 42};
  const int n = int(toks.size());
  ModelOptions eo;
  eo.n_threads = 1;
  eo.max_ctx = 16;
  Model eager(*src, eo);
  ModelOptions lo = eo;
  lo.lazy_blocks = true;
  Model lazy(*src, lo);
  std::vector<float> xe(size_t(n * c.dim)), xl(size_t(n * c.dim));
  eager.embed(toks.data(), n, xe.data());
  lazy.embed(toks.data(), n, xl.data());
  EXPECT_EQ(xe, xl);
  EXPECT_FALSE(lazy.block_loaded(0));
  EXPECT_NE(error_of([&] { lazy.forward_block(0, xl.data(), n, 0); }).find("load_block(0)"),
            std::string::npos);
  for (int l = 0; l < c.n_layers; ++l) {
    eager.forward_block(l, xe.data(), n, 0);
    lazy.load_block(l);
    lazy.forward_block(l, xl.data(), n, 0);
    lazy.release_block(l);
    EXPECT_FALSE(lazy.block_loaded(l));
    ASSERT_EQ(xe, xl) << "block " << l;
  }
  eager.final_norm(xe.data(), n);
  lazy.final_norm(xl.data(), n);
  std::vector<float> le(size_t(c.vocab_size)), ll(size_t(c.vocab_size));
  eager.logits(xe.data() + (n - 1) * c.dim, 1, le.data());
  lazy.logits(xl.data() + (n - 1) * c.dim, 1, ll.data());
  EXPECT_EQ(le, ll);
  // Random weights of the 1/sqrt(fan_in) scale keep activations finite and of moderate size.
  for (float v : le) ASSERT_TRUE(std::isfinite(v));
  // A vocabulary too small for the specials and byte tokens is refused.
  EXPECT_NE(error_of([&] { so.vocab_size = 100; write_synthetic_model(dir.file("bad.gguf"), so); })
                .find("at least 260"),
            std::string::npos);
}

}  // namespace
}  // namespace elutq
