// `elutq quantize` killed for real: a calibrated run on stories260K under --mem-budget (activations
// spilled to --scratch-dir) is SIGKILLed once a middle block's checkpoint is on disk, the same
// command is run again, and the file it writes must be byte for byte an uninterrupted run's. One
// case per quantized format, since each one's tensors pass through the checkpoint differently;
// and a killed run whose saved activations were then damaged is refused, not resumed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

extern char** environ;

namespace elutq {
namespace {

namespace fs = std::filesystem;

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// Starts the CLI with args (no shell), its output to log; returns its pid.
pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> argv_s = {ELUTQ_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

std::string join(const std::vector<std::string>& args) {
  std::string s;
  for (const std::string& a : args) s += " " + a;
  return s;
}

// `elutq quantize IN DIR/out.gguf` calibrated on 4 x 128 tokens under a budget that spills the
// activations to DIR/scratch, in the format method_args picks.
std::vector<std::string> quantize_args(const std::string& model, const std::string& text,
                                       const std::string& method_args, const test::TempDir& dir) {
  std::vector<std::string> args = {"quantize", model, dir.file("out.gguf")};
  std::istringstream method(method_args);
  for (std::string w; method >> w;) args.push_back(w);
  for (const char* a : {"--calib", text.c_str(), "--nsamples", "4", "--seqlen", "128",
                        "--mem-budget", "1M", "-t", "1", "-q"})
    args.push_back(a);
  args.push_back("--scratch-dir");
  args.push_back(dir.file("scratch"));
  return args;
}

// Runs the CLI with args and SIGKILLs it once block 2's checkpoint is on disk: stories260K has 5
// blocks, so 3 and 4 are still to do. The run may outpace the polling on a busy machine; then it
// is simply tried again.
testing::AssertionResult kill_after_block_2(const std::vector<std::string>& args,
                                            const std::string& out, const std::string& log) {
  const std::string work = out + ".elutq-work";
  for (int attempt = 0; attempt < 5; ++attempt) {
    fs::remove_all(work);
    fs::remove(out);
    const pid_t pid = spawn_cli(args, log);
    if (pid <= 0) return testing::AssertionFailure() << "cannot start " << ELUTQ_CLI_PATH;
    int status = 0;
    bool exited = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!fs::exists(work + "/block-2.ckpt") && std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    if (!exited) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    if (exited && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
      return testing::AssertionFailure() << "the run to be killed failed by itself:\n"
                                         << file_bytes(log);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && !fs::exists(out) &&
        fs::exists(work + "/block-2.ckpt") && !fs::exists(work + "/block-4.ckpt"))
      return testing::AssertionSuccess();
  }
  return testing::AssertionFailure() << "could not kill the run between block 2 and block 4";
}

struct KillCase {
  const char* name;
  const char* method_args;  // the format under test
};

class ResumeAfterKill : public testing::TestWithParam<KillCase> {};

TEST_P(ResumeAfterKill, RerunGivesTheUninterruptedFile) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  const std::string text = test::shared_file("data/tinystories/validation_head.txt");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  ELUTQ_REQUIRE_FILE(text, "TinyStories text");
  test::TempDir ref_dir, kill_dir;
  const test::CommandResult ref =
      test::run_elutq(join(quantize_args(model, text, GetParam().method_args, ref_dir)));
  ASSERT_EQ(ref.code, 0) << ref.out;
  ASSERT_NE(ref.out.find("spilled to disk"), std::string::npos)
      << "the budget should spill the activations, so the scratch files are part of the test\n"
      << ref.out;

  const std::vector<std::string> args =
      quantize_args(model, text, GetParam().method_args, kill_dir);
  const std::string out = kill_dir.file("out.gguf");
  ASSERT_TRUE(kill_after_block_2(args, out, kill_dir.file("killed.log")));

  const test::CommandResult again = test::run_elutq(join(args));
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("resuming: "), std::string::npos) << again.out;
  EXPECT_FALSE(fs::exists(out + ".elutq-work")) << "work directory left behind";
  const std::string want = file_bytes(ref_dir.file("out.gguf")), got = file_bytes(out);
  EXPECT_GT(want.size(), 100000u);
  EXPECT_TRUE(want == got) << "the resumed file differs from the uninterrupted run's ("
                           << got.size() << " vs " << want.size() << " bytes)";
}

// The activations a killed run left are damaged (one byte of one float): the rerun stops with an
// error naming the file and --restart and writes no output, rather than quantizing the remaining
// blocks on wrong inputs; --restart then gives the uninterrupted file.
TEST(ResumeAfterKillDamaged, ActivationsAreRefusedAndRestartRecovers) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  const std::string text = test::shared_file("data/tinystories/validation_head.txt");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  ELUTQ_REQUIRE_FILE(text, "TinyStories text");
  const std::string method = "--method hlq-gptq --bits 3 --group 32 --hlq-params compact";
  test::TempDir ref_dir, kill_dir;
  const test::CommandResult ref =
      test::run_elutq(join(quantize_args(model, text, method, ref_dir)));
  ASSERT_EQ(ref.code, 0) << ref.out;
  const std::vector<std::string> args = quantize_args(model, text, method, kill_dir);
  const std::string out = kill_dir.file("out.gguf"), work = out + ".elutq-work";
  ASSERT_TRUE(kill_after_block_2(args, out, kill_dir.file("killed.log")));

  std::string acts;  // the newest activations: after block 2, or 3 if it finished too
  for (const auto& e : fs::directory_iterator(work))
    if (e.path().filename().string().rfind("acts-", 0) == 0 && e.path().extension() == ".bin")
      acts = std::max(acts, e.path().string());
  ASSERT_FALSE(acts.empty());
  {
    std::fstream f(acts, std::ios::in | std::ios::out | std::ios::binary);
    const std::streamoff at = std::streamoff(fs::file_size(acts) / 2);
    f.seekg(at);
    const char c = char(f.get());
    f.seekp(at);
    f.put(char(c ^ 0x04));
  }
  const test::CommandResult bad = test::run_elutq(join(args));
  EXPECT_NE(bad.code, 0) << bad.out;
  EXPECT_NE(bad.out.find("damaged (checksum mismatch)"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("--restart"), std::string::npos) << bad.out;
  EXPECT_FALSE(fs::exists(out));

  const test::CommandResult again = test::run_elutq(join(args) + " --restart");
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_TRUE(file_bytes(ref_dir.file("out.gguf")) == file_bytes(out))
      << "--restart after damaged activations differs from the uninterrupted run";
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ResumeAfterKill,
    testing::Values(KillCase{"hlqc", "--method hlq-gptq --bits 3 --group 32 --hlq-params compact"},
                    KillCase{"hlq", "--method hlq-gptq --bits 2 --group 32"},
                    KillCase{"uniform_gptq", "--method gptq --bits 4 --group 32"},
                    KillCase{"uniform_plain_gptq", "--method gptq --bits 6 --group 32"},
                    KillCase{"uniform_awq_rtn", "--method awq --bits 3 --group 32"},
                    KillCase{"ganq", "--method ganq --bits 3"}),
    [](const testing::TestParamInfo<KillCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace elutq
