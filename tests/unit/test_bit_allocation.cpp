// --target-bpw: the greedy allocation keeps the budget, upgrades where the error falls most per
// bit, and matches exhaustive search on small cases; the sensitivity measurement behaves like an
// error should (wider is better); the quantize job writes a file within the target, the same
// twice, and an interrupted one resumes with the allocation it measured (not measuring again) to
// the same file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>

#include "core/error.h"
#include "quant/bit_allocation.h"
#include "quant/quantize_job.h"
#include "quant/resume_checkpoint.h"
#include "runtime/open_model.h"
#include "test_util.h"

namespace elutq {
namespace {

namespace fs = std::filesystem;

std::vector<QuantSpec> uniform_choices(std::vector<int> bits, int group) {
  std::vector<QuantSpec> out;
  for (int b : bits) {
    QuantSpec s;
    s.kind = QuantKind::Uniform;
    s.bits = b;
    s.group = group;
    out.push_back(s);
  }
  return out;
}

double total_error(const std::vector<TensorSensitivity>& t, const std::vector<int>& c) {
  double e = 0;
  for (size_t i = 0; i < t.size(); ++i) e += t[i].error[size_t(c[i])];
  return e;
}

TEST(BitAllocation, KeepsTheBudgetAndUpgradesTheSensitiveFirst) {
  const auto choices = uniform_choices({2, 3, 4}, 64);  // 2.5, 3.5, 4.5 bits per weight
  std::vector<TensorSensitivity> t = {
      {"a", 64, 256, {1.0, 0.25, 0.06}},
      {"b", 64, 256, {10.0, 2.5, 0.6}},  // ten times as sensitive
      {"c", 64, 256, {1.0, 0.25, 0.06}},
  };
  std::vector<int> c = allocate_widths(t, choices, 2.5);
  EXPECT_EQ(c, (std::vector<int>{0, 0, 0}));
  c = allocate_widths(t, choices, 2.5 + 1.0 / 3 + 1e-9);  // one upgrade's worth
  EXPECT_EQ(c, (std::vector<int>{0, 1, 0}));
  EXPECT_LE(allocation_bpw(t, choices, c), 2.5 + 1.0 / 3 + 1e-9);
  c = allocate_widths(t, choices, 2.5 + 2.0 / 3 + 1e-9);  // b again (its step from 3 to 4
  EXPECT_EQ(c, (std::vector<int>{0, 2, 0}));              // bits removes more than a's first)
  c = allocate_widths(t, choices, 4.5);
  EXPECT_EQ(c, (std::vector<int>{2, 2, 2}));
  EXPECT_TRUE(test::error_of([&] { allocate_widths(t, choices, 2.0); }).find("below what") !=
              std::string::npos);
}

TEST(BitAllocation, NeverExceedsTheTargetAndLeavesNoFittingUpgrade) {
  std::mt19937 rng(7);
  const auto choices = uniform_choices({2, 3, 4}, 32);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<TensorSensitivity> t;
    for (int i = 0; i < 4; ++i) {
      const double s = std::exp(std::uniform_real_distribution<double>(-3, 3)(rng));
      const double r1 = std::uniform_real_distribution<double>(0.1, 1.2)(rng);  // > 1: dominated
      const double r2 = std::uniform_real_distribution<double>(0.1, 0.9)(rng);
      t.push_back({"t" + std::to_string(i), 32 * (1 + int(rng() % 4)), 128,
                   {s, s * r1, s * r1 * r2}});
    }
    const double target = std::uniform_real_distribution<double>(3.05, 4.95)(rng);
    const std::vector<int> g = allocate_widths(t, choices, target);
    const double g_bpw = allocation_bpw(t, choices, g);
    ASSERT_LE(g_bpw, target + 1e-12);
    // Exhaustive search's best within the target bounds the greedy's error from below.
    double best = INFINITY;
    std::vector<int> c(t.size(), 0);
    std::function<void(size_t)> rec = [&](size_t i) {
      if (i == t.size()) {
        if (allocation_bpw(t, choices, c) <= target + 1e-12) best = std::min(best, total_error(t, c));
        return;
      }
      for (int k = 0; k < 3; ++k) {
        c[i] = k;
        rec(i + 1);
      }
    };
    rec(0);
    EXPECT_GE(total_error(t, g), best - 1e-12);
    // No single upgrade that fits the budget and lowers the error is left untaken (on top of the
    // greedy's choice, along each tensor's own order of widths).
    for (size_t i = 0; i < t.size(); ++i)
      for (int k = g[i] + 1; k < 3; ++k) {
        std::vector<int> up = g;
        up[i] = k;
        if (allocation_bpw(t, choices, up) <= target + 1e-12 &&
            t[i].error[size_t(k)] < t[i].error[size_t(g[i])]) {
          // Allowed only when the greedy's path skipped k as off its convex hull: then a wider
          // hull point must also not fit.
          bool wider_fits = false;
          for (int j = k + 1; j < 3; ++j) {
            up[i] = j;
            wider_fits |= allocation_bpw(t, choices, up) <= target + 1e-12;
          }
          EXPECT_FALSE(wider_fits) << "trial " << trial << " tensor " << i;
        }
      }
  }
}

TEST(BitAllocation, WidthChoicesParseAndRefuse) {
  const auto c = parse_width_choices("w2g128,w3g128,w2g128,w4g64", QuantKind::HLQ);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[2].name(), "hlq-w4g64");
  EXPECT_NE(test::error_of([] { parse_width_choices("w2g128,w3", QuantKind::HLQ); })
                .find("needs its group"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { parse_width_choices("w2g128,w5g128", QuantKind::HLQ); }), "");
  EXPECT_NE(test::error_of([] { parse_width_choices("w2g128", QuantKind::HLQ); }).find("two"),
            std::string::npos);
  EXPECT_EQ(default_width_choices(QuantKind::HLQ, 3, 128).size(), 2u);  // w3, w4: HLQ stops at 4
  EXPECT_EQ(default_width_choices(QuantKind::Uniform, 2, 64).size(), 3u);
  const auto rules = allocation_rules({{"blk.1.ffn_down.weight", 4, 64, {1, 0.5}}},
                                      uniform_choices({2, 3}, 64), {1});
  EXPECT_EQ(rules, std::vector<std::string>{"^blk\\.1\\.ffn_down\\.weight$=w3g64"});
}

TEST(BitAllocation, WiderWidthsMeasureSmallerErrors) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  auto src = open_model(model);
  std::mt19937 rng(3);
  std::vector<std::vector<int>> seqs(2, std::vector<int>(64));
  for (auto& s : seqs)
    for (int& id : s) id = 3 + int(rng() % 500);
  BlockwiseOptions opt;
  opt.layer.method = QuantMethod::Hlq;
  opt.layer.group = 32;
  opt.n_threads = 1;
  const auto choices = uniform_choices({2, 3, 4}, 32);
  const std::vector<TensorSensitivity> s = measure_model_sensitivity(*src, opt, seqs, choices);
  ASSERT_EQ(s.size(), size_t(src->config().n_layers) * kLinearSlots);
  for (const TensorSensitivity& t : s) {
    ASSERT_EQ(t.error.size(), 3u);
    EXPECT_GT(t.error[0], t.error[1]) << t.name;
    EXPECT_GT(t.error[1], t.error[2]) << t.name;
    EXPECT_GT(t.error[2], 0) << t.name;
    EXPECT_LT(t.error[0], 1) << t.name;  // a relative error of one projection's 2-bit grid
  }
}

// stories260K, HLQ w2g32 from data-free calibration, widths chosen for target_bpw.
QuantizeJob stories_target_job(const std::string& model, double target_bpw) {
  QuantizeJob job;
  job.source_path = model;
  job.method = QuantMethod::Hlq;
  job.bits = 2;
  job.group = 32;
  job.target_bpw = target_bpw;
  job.n_threads = 1;
  return job;
}

TEST(BitAllocation, QuantizeJobStaysWithinTheTargetAndRepeats) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  test::TempDir dir;
  QuantizeJob job = stories_target_job(model, 4.2);
  std::vector<std::string> bytes;
  for (const char* name : {"a.gguf", "b.gguf"}) {
    job.out_path = dir.file(name);
    const QuantizeResult r = run_quantize_job(job, open_model(model));
    EXPECT_LE(r.bits_per_weight, 4.2 + 1e-9);
    EXPECT_GT(r.bits_per_weight, 3.9);  // the budget is used, not left idle
    std::set<std::string> formats;
    for (const auto& l : r.report.layers) formats.insert(l.format);
    EXPECT_GE(formats.size(), 2u);
    std::ifstream in(job.out_path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    bytes.push_back(ss.str());
  }
  EXPECT_TRUE(bytes[0] == bytes[1]);
  job.tensor_specs = {"ffn_down=w3"};
  EXPECT_NE(test::error_of([&] { validate_quantize_job(job); }).find("drop --tensor-spec"),
            std::string::npos);
}

struct SimulatedCrash {};

TEST(BitAllocation, AnInterruptedJobResumesWithTheAllocationItMeasured) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  test::TempDir dir;
  QuantizeJob job = stories_target_job(model, 3.6);
  job.out_path = dir.file("whole.gguf");
  run_quantize_job(job, open_model(model));
  EXPECT_FALSE(fs::exists(job.out_path + ".allocation.txt"));  // removed with the work directory

  std::vector<std::string> events;
  std::string stage;
  QuantizeCallbacks cb;
  cb.log = [&](const std::string& line) { events.push_back(line); };
  cb.stage_begin = [&](const std::string& name, int64_t) {
    stage = name;
    events.push_back("begin " + name);
  };
  // In the quantize stage an update with no status follows a block's checkpoint.
  const auto crash_after_block_1 = [&](int64_t done, const std::string& status) {
    if (stage == "quantize" && done == 2 && status.empty()) throw SimulatedCrash{};
  };
  cb.stage_update = crash_after_block_1;
  job.out_path = dir.file("resumed.gguf");
  EXPECT_THROW(run_quantize_job(job, open_model(model), cb), SimulatedCrash);
  ASSERT_TRUE(fs::exists(job.out_path + ".allocation.txt"));
  EXPECT_NE(std::find(events.begin(), events.end(), "begin sensitivity"), events.end());

  events.clear();
  cb.stage_update = nullptr;
  run_quantize_job(job, open_model(model), cb);
  EXPECT_EQ(std::find(events.begin(), events.end(), "begin sensitivity"), events.end());
  EXPECT_NE(std::find_if(events.begin(), events.end(),
                         [](const std::string& e) {
                           return e.rfind("resuming: bit allocation as measured", 0) == 0;
                         }),
            events.end());
  EXPECT_TRUE(read_whole_file(job.out_path) == read_whole_file(dir.file("whole.gguf")));
  EXPECT_FALSE(fs::exists(job.out_path + ".allocation.txt"));

  // Other settings measure again instead of taking the saved rules (and the interrupted run's
  // work is then refused as another run's); --restart measures again too.
  job.out_path = dir.file("other.gguf");
  cb.stage_update = crash_after_block_1;
  EXPECT_THROW(run_quantize_job(job, open_model(model), cb), SimulatedCrash);
  cb.stage_update = nullptr;
  job.target_bpw = 4.2;
  events.clear();
  const std::string refused = test::error_of([&] { run_quantize_job(job, open_model(model), cb); });
  EXPECT_NE(refused.find("other settings"), std::string::npos) << refused;
  EXPECT_NE(std::find(events.begin(), events.end(), "begin sensitivity"), events.end());
  job.target_bpw = 3.6;
  job.restart = true;
  events.clear();
  run_quantize_job(job, open_model(model), cb);
  EXPECT_NE(std::find(events.begin(), events.end(), "begin sensitivity"), events.end());
  EXPECT_TRUE(read_whole_file(job.out_path) == read_whole_file(dir.file("whole.gguf")));
}

// --restart with --target-bpw and E2E-QP starts over even where Block-AP's stage left a work
// directory of other settings beside its stage-1 file (OUT.stage1.gguf.elutq-work).
TEST(BitAllocation, RestartDiscardsTheStageOneWorkDirectoryToo) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  test::TempDir dir;
  QuantizeJob job = stories_target_job(model, 3.6);
  job.method = QuantMethod::HlqGptq;
  job.nsamples = 4;
  job.seqlen = 32;
  job.e2e_qp = E2eQpOptions{};
  job.e2e_qp->epochs = 1;
  job.out_path = dir.file("e2e.gguf");
  const std::string stale = job.out_path + ".stage1.gguf.elutq-work";
  fs::create_directories(stale);
  std::ofstream(stale + "/manifest.txt") << "format=some-other-run\n";
  EXPECT_NE(test::error_of([&] { run_quantize_job(job, open_model(model)); }).find("other settings"),
            std::string::npos);
  job.restart = true;
  run_quantize_job(job, open_model(model));
  EXPECT_TRUE(fs::exists(job.out_path));
  EXPECT_FALSE(fs::exists(stale));
}

}  // namespace
}  // namespace elutq
