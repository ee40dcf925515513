// Quantizing through the library (quant/quantize_job.h) as a program that embeds elutq would: the
// file equals the one `elutq quantize` writes with the same options, byte for byte, and loads; the
// callbacks see the calibration notice and both stages; an interrupted job resumes to the same
// file; bad options are refused before any model is read.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "quant/quantize_job.h"
#include "runtime/open_model.h"
#include "test_util.h"

namespace elutq {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Data-free HLQ-GPTQ w3g32 on 2 x 64 sampled tokens: calibration sampling, the blockwise
// quantizer and the streaming writer all run, in well under a second on stories260K.
QuantizeJob stories_job(const std::string& model, const std::string& out) {
  QuantizeJob job;
  job.source_path = model;
  job.out_path = out;
  job.method = QuantMethod::HlqGptq;
  job.bits = 3;
  job.group = 32;
  job.nsamples = 2;
  job.seqlen = 64;
  job.n_threads = 2;
  return job;
}

// What the callbacks received, in order: log lines as they are, stages as "begin NAME TOTAL" and
// "end", updates counted.
struct Recorder {
  std::vector<std::string> events;
  std::string stage;  // the one running
  int64_t updates = 0;
  std::function<void(const std::string& stage, int64_t, const std::string&)> on_update;
  QuantizeCallbacks callbacks() {
    QuantizeCallbacks cb;
    cb.log = [this](const std::string& line) { events.push_back(line); };
    cb.stage_begin = [this](const std::string& stage, int64_t total) {
      this->stage = stage;
      events.push_back("begin " + stage + " " + std::to_string(total));
    };
    cb.stage_update = [this](int64_t done, const std::string& status) {
      ++updates;
      if (on_update) on_update(stage, done, status);
    };
    cb.stage_end = [this] { events.push_back("end"); };
    return cb;
  }
};

TEST(QuantizeJob, WritesTheSameFileAsTheCli) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  test::TempDir dir;
  const QuantizeJob job = stories_job(model, dir.file("lib.gguf"));
  Recorder rec;
  const QuantizeResult r = run_quantize_job(job, open_model(model), rec.callbacks());

  EXPECT_EQ(rec.events, (std::vector<std::string>{
                            "calibration: no --calib given; sampling 2 x 64 tokens from the model "
                            "(temperature 1, seed 0)",
                            "begin sampling 126", "end", "begin quantize 5", "end"}));
  EXPECT_GT(rec.updates, 5);
  EXPECT_EQ(r.report.layers.size(), 35u);  // 5 blocks x 7 projections
  EXPECT_EQ(r.spec.name(), "hlq-w3g32");
  EXPECT_EQ(r.file_bytes, fs::file_size(job.out_path));
  EXPECT_GT(r.mean_rel_output_error, 0);  // calibrated: every layer has an output error
  EXPECT_FALSE(fs::exists(job.out_path + ".elutq-work")) << "work directory left behind";

  auto back = open_model(job.out_path);
  EXPECT_EQ(back->config().n_layers, 5);
  EXPECT_NE(back->find("blk.4.ffn_down.weight"), nullptr);

#ifdef ELUTQ_CLI_PATH
  const std::string cli_out = dir.file("cli.gguf");
  const test::CommandResult cli =
      test::run_elutq("quantize " + model + " " + cli_out +
                      " --method hlq-gptq --bits 3 --group 32 --nsamples 2 --seqlen 64 -t 2 -q");
  ASSERT_EQ(cli.code, 0) << cli.out;
  // Both files record the source by its file name, so they can be equal.
  EXPECT_TRUE(read_bytes(job.out_path) == read_bytes(cli_out))
      << "the library and the CLI wrote different files";
#endif
}

struct SimulatedCrash {};

TEST(QuantizeJob, ResumesAnInterruptedRunToTheSameFile) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  test::TempDir dir;
  const QuantizeJob whole = stories_job(model, dir.file("whole.gguf"));
  const QuantReport whole_report = run_quantize_job(whole, open_model(model)).report;
  ASSERT_FALSE(whole_report.layers.empty());
  ASSERT_FALSE(whole_report.layers[0].format.empty());

  const QuantizeJob job = stories_job(model, dir.file("resumed.gguf"));
  Recorder crash;
  // In the quantize stage an update with no status follows a block's checkpoint; stop after
  // block 1's.
  crash.on_update = [](const std::string& stage, int64_t done, const std::string& status) {
    if (stage == "quantize" && done == 2 && status.empty()) throw SimulatedCrash{};
  };
  EXPECT_THROW(run_quantize_job(job, open_model(model), crash.callbacks()), SimulatedCrash);
  EXPECT_FALSE(fs::exists(job.out_path));
  EXPECT_TRUE(fs::exists(job.out_path + ".elutq-work"));

  Recorder again;
  const QuantizeResult r = run_quantize_job(job, open_model(model), again.callbacks());
  EXPECT_NE(std::find(again.events.begin(), again.events.end(),
                      "resuming: 2 of 5 blocks were finished by an earlier run"),
            again.events.end());
  EXPECT_EQ(r.report.layers.size(), 35u);  // the replayed blocks' lines included
  for (const LayerReport& l : r.report.layers)  // the replayed lines keep their format
    EXPECT_EQ(l.format, whole_report.layers[0].format) << l.name;
  EXPECT_TRUE(read_bytes(job.out_path) == read_bytes(whole.out_path));
  EXPECT_FALSE(fs::exists(job.out_path + ".elutq-work"));
}

TEST(QuantizeJob, RefusesBadOptionsWithTheCliMessages) {
  test::TempDir dir;
  const auto message = [&](void (*change)(QuantizeJob&)) -> std::string {
    QuantizeJob job;
    job.source_path = dir.file("model.gguf");  // never read
    job.out_path = dir.file("out.gguf");
    change(job);
    try {
      validate_quantize_job(job);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(message([](QuantizeJob&) {}), "");
  EXPECT_EQ(message([](QuantizeJob& j) { j.bits = 9; }), "--bits must be between 1 and 8, got 9");
  EXPECT_EQ(message([](QuantizeJob& j) { j.bits = 5; }),
            "--bits 5: hlq stores 1 to 4 bit-planes; use --bits 1..4");
  EXPECT_EQ(message([](QuantizeJob& j) { j.nsamples = 0; }), "--nsamples must be positive, got 0");
  EXPECT_EQ(message([](QuantizeJob& j) { j.mem_budget = "0M"; }),
            "--mem-budget must be positive, got '0M'");
  EXPECT_EQ(message([](QuantizeJob& j) { j.awq_clip = true; }),
            "--awq-clip needs AWQ (--method awq or --awq)");
  EXPECT_EQ(message([](QuantizeJob& j) { j.out_path = "/tmp"; }),
            "OUT '/tmp' is a directory: give a file name");
  EXPECT_EQ(message([](QuantizeJob& j) { j.out_path = ""; }), "OUT is empty: give a file name");
  EXPECT_EQ(message([](QuantizeJob& j) { j.n_threads = 100000; }).rfind("thread count 100000 is out of range", 0), 0u);
  QuantizeJob bad;
  bad.bits = 0;
  EXPECT_THROW(run_quantize_job(bad, nullptr), Error);  // run validates too
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

}  // namespace
}  // namespace elutq
