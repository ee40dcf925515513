// `elutq generate` end to end: stories260K's greedy continuation matches the reference text in
// shared/README.md; SmolLM2 chat prompt is formatted with its template; bad arguments fail cleanly.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "test_util.h"

namespace elutq {
namespace {

using test::CommandResult;
CommandResult run_cli(const std::string& args, bool merge_stderr) {
  return test::run_command(std::string(ELUTQ_CLI_PATH) + " generate " + args +
                           (merge_stderr ? " 2>&1" : " 2>/dev/null"));
}

TEST(GenerateCli, Stories260KGreedyMatchesReference) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  const CommandResult r =
      run_cli("-m " + model + " -p 'Once upon a time' --temp 0 -n 12 -t 1", false);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << r.out;
}

TEST(GenerateCli, SameSeedSameText) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  const std::string args = "-m " + model + " -p 'Once' --temp 1 -n 20 -t 1 --seed ";
  const CommandResult a = run_cli(args + "5", false), b = run_cli(args + "5", false);
  ASSERT_EQ(a.code, 0);
  EXPECT_EQ(a.out, b.out);
}

TEST(GenerateCli, SmolLM2ChatPromptUsesTemplate) {
  const std::string model = test::smollm2_path();
  ELUTQ_REQUIRE_FILE(model, "SmolLM2 GGUF");
  const CommandResult r =
      run_cli("-m " + model + " --chat -p 'Hi' --print-prompt -n 1 --temp 0 -t 1", true);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
            std::string::npos);
}

TEST(GenerateCli, BadArgumentsAreOneLineErrors) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  for (const std::string& args : std::vector<std::string>{
           "-m " + model + " -p x --top-p 0", "-m " + model + " -p x --chat-template alpaca --chat",
           "-m /nonexistent.gguf -p x", "-m " + model + " --bogus",
           "-m " + model + " -p x -n -3"}) {
    const CommandResult r = run_cli(args, true);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.out.find("elutq: error:"), std::string::npos) << args << ": " << r.out;
  }
}

}  // namespace
}  // namespace elutq

namespace elutq {
namespace {

TEST(ChatCli, SmolLM2KeepsTheConversationAcrossTurns) {
  const std::string model = test::smollm2_path();
  ELUTQ_REQUIRE_FILE(model, "SmolLM2 GGUF");
  // The second question only makes sense with the first turn in context (KV cache reused).
  const std::string cmd =
      "printf 'What is the capital of France?\\nAnd of Germany?\\n/quit\\n' | " +
      std::string(ELUTQ_CLI_PATH) + " chat -m " + model + " --temp 0 -n 40 -t 1 2>/dev/null";
  const CommandResult r = test::run_command(cmd);
  const std::string& out = r.out;
  EXPECT_EQ(r.code, 0) << out;
  EXPECT_NE(out.find("Paris"), std::string::npos) << out;
  EXPECT_NE(out.find("Berlin"), std::string::npos) << out;
}

}  // namespace
}  // namespace elutq
