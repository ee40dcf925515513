// Streaming quantization end to end on a small synthetic model: a run whose activations are
// spilled to disk, and a run interrupted after a block and restarted, hand the output exactly the
// same tensors in the same order as a plain in-memory run.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <random>

#include "core/error.h"
#include "format/quantized_model_writer.h"
#include "format/synthetic_model.h"
#include "quant/activation_store.h"
#include "quant/blockwise_quantizer.h"
#include "quant/resume_driver.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "test_util.h"

namespace elutq {
namespace {

namespace fs = std::filesystem;

// Serializes every call it receives, so two runs can be compared byte for byte.
class TranscriptSink final : public QuantizedTensorSink {
 public:
  void add_quantized(const std::string& name, const QuantizedMatrix& q) override {
    log_ += "Q " + name + " " + q.spec.name() + " " + std::to_string(q.rows) + "x" +
            std::to_string(q.cols) + "\n";
    log_.append(reinterpret_cast<const char*>(q.codes.data()), q.codes.size());
    log_.append(reinterpret_cast<const char*>(q.params.data()), q.params.size() * 4);
  }
  void add_unchanged(const TensorInfo& t) override {
    log_ += "U " + t.name + "\n";
    log_.append(reinterpret_cast<const char*>(t.data), t.nbytes);
  }
  void add_f32(const TensorInfo& like, const float* data) override {
    log_ += "F " + like.name + "\n";
    log_.append(reinterpret_cast<const char*>(data), size_t(like.numel()) * 4);
  }
  const std::string& log() const { return log_; }

 private:
  std::string log_;
};

struct Fixture {
  test::TempDir dir;
  std::string model_path, out;
  std::unique_ptr<ModelSource> src;
  std::vector<std::vector<int>> seqs;
  Fixture() {
    SyntheticModelOptions so;
    so.dim = 128;
    so.n_layers = 4;
    so.hidden_dim = 256;
    so.vocab_size = 300;
    so.seed = 7;
    model_path = dir.file("synth.gguf");
    out = dir.file("out.elutq");
    write_synthetic_model(model_path, so);
    src = open_model(model_path);
    std::mt19937 rng(3);
    seqs.assign(3, std::vector<int>(24));
    for (auto& s : seqs)
      for (int& t : s) t = int(rng() % 300);
  }
  RunManifest manifest(const std::string& method) const {
    RunManifest m;
    m.set("source", file_identity(model_path));
    m.set("method", method);
    return m;
  }
  static BlockwiseOptions options(int threads) {
    BlockwiseOptions bo;
    bo.layer.method = QuantMethod::Gptq;
    bo.layer.bits = 2;
    bo.layer.group = 32;
    bo.n_threads = threads;
    return bo;
  }
  // One full run into an elutq model file at `file`.
  void run_to_file(const std::string& file, uint64_t act_budget, ResumableRunOptions ro) {
    BlockwiseQuantizer q(*src, options(1));
    ActivationStore store(int64_t(seqs.size()), 24, 128, act_budget, dir.file("scratch"));
    q.embed_calibration(seqs, store);
    QuantizedFilePlan plan = plan_quantized_file(*src, method_spec(options(1).layer), false);
    plan.method = "gptq";
    QuantizedModelWriter w(file, *src, plan);
    ro.out_path = file;
    run_resumable(q, *src, &store, w, ro, [&] { w.finish(); });
  }
  // One full run; returns the transcript of what reached the sink.
  std::string run(uint64_t act_budget, ResumableRunOptions ro, QuantReport* rep = nullptr,
                  int threads = 1) {
    BlockwiseQuantizer q(*src, options(threads));
    ActivationStore store(int64_t(seqs.size()), 24, 128, act_budget, dir.file("scratch"));
    q.embed_calibration(seqs, store);
    TranscriptSink sink;
    bool finished = false;
    ro.out_path = out;
    QuantReport r = run_resumable(q, *src, &store, sink, ro, [&] { finished = true; });
    EXPECT_TRUE(finished);
    EXPECT_FALSE(fs::exists(ResumeDir::dir_for(out))) << "work directory left behind";
    if (rep) *rep = r;
    return sink.log();
  }
};

TEST(OffloadResume, SpilledActivationsGiveTheSameOutput) {
  Fixture f;
  ResumableRunOptions ro;
  ro.manifest = f.manifest("gptq");
  QuantReport rep;
  const std::string in_memory = f.run(1ull << 30, ro, &rep);
  const std::string spilled = f.run(0, ro);
  EXPECT_EQ(rep.layers.size(), 4u * 7u);
  EXPECT_GT(in_memory.size(), 10000u);
  EXPECT_TRUE(in_memory == spilled) << "spilled activations changed the quantized model";
}

TEST(OffloadResume, InterruptedRunResumesToTheSameOutput) {
  Fixture f;
  ResumableRunOptions ro;
  ro.manifest = f.manifest("gptq");
  QuantReport full_rep;
  const std::string full = f.run(0, ro, &full_rep);

  // Crash right after block 1's checkpoint: the sink's partial output is lost, as a killed
  // process's temporary file would be.
  ResumableRunOptions crash = ro;
  crash.after_checkpoint = [](int l) {
    if (l == 1) throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(f.run(1ull << 30, crash), std::runtime_error);
  ASSERT_TRUE(fs::exists(ResumeDir::dir_for(f.out)));

  // Other settings are refused, naming the difference.
  try {
    f.run(0, [&] {
      ResumableRunOptions o = ro;
      o.manifest = f.manifest("rtn");
      return o;
    }());
    ADD_FAILURE() << "a resume with another method was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("method was 'gptq'"), std::string::npos) << e.what();
  }

  int resumed_at = -1;
  ResumableRunOptions again = ro;
  again.on_resume = [&](int k) { resumed_at = k; };
  QuantReport rep;
  const std::string resumed = f.run(0, again, &rep);  // and with spilled activations this time
  EXPECT_EQ(resumed_at, 2);
  EXPECT_TRUE(resumed == full) << "the resumed run's output differs from an uninterrupted run";
  ASSERT_EQ(rep.layers.size(), full_rep.layers.size());
  for (size_t i = 0; i < rep.layers.size(); ++i) {
    EXPECT_EQ(rep.layers[i].name, full_rep.layers[i].name);
    EXPECT_EQ(rep.layers[i].rel_weight_error, full_rep.layers[i].rel_weight_error);
  }
  EXPECT_EQ(rep.quantized_weights, full_rep.quantized_weights);
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// The same through the real model-file writer: the interrupted (and spilled) run's file is byte
// for byte the in-memory run's, and the killed run leaves no file under the final name.
TEST(OffloadResume, ResumedModelFileIsByteIdentical) {
  Fixture f;
  ResumableRunOptions ro;
  ro.manifest = f.manifest("gptq");
  const std::string a = f.dir.file("a.elutq"), b = f.dir.file("b.elutq");
  f.run_to_file(a, 1ull << 30, ro);
  ResumableRunOptions crash = ro;
  crash.after_checkpoint = [](int l) {
    if (l == 2) throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(f.run_to_file(b, 0, crash), std::runtime_error);
  EXPECT_FALSE(fs::exists(b));
  EXPECT_TRUE(fs::exists(ResumeDir::dir_for(b)));
  f.run_to_file(b, 0, ro);
  EXPECT_FALSE(fs::exists(ResumeDir::dir_for(b)));
  const std::string ba = file_bytes(a), bb = file_bytes(b);
  EXPECT_GT(ba.size(), 100000u);
  EXPECT_TRUE(ba == bb) << "resumed file differs (" << ba.size() << " vs " << bb.size() << " bytes)";
  // And it opens as a model.
  EXPECT_NO_THROW(open_model(b));
}

TEST(OffloadResume, ThreadCountDoesNotChangeTheOutput) {
  Fixture f;
  ResumableRunOptions ro;
  ro.manifest = f.manifest("gptq");
  const std::string one = f.run(1ull << 30, ro, nullptr, 1);
  const std::string two = f.run(1ull << 30, ro, nullptr, 2);
  EXPECT_TRUE(one == two) << "1 and 2 threads quantize differently";
}

}  // namespace
}  // namespace elutq
