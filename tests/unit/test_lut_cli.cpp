// `elutq bench` (tools/bench.cpp): bad arguments give one clear error line and a non-zero exit.
// (x86/host only: the ARM kernel test build has no CLI.)
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace elutq {
namespace {

TEST(LutBenchCli, RejectsUnknownArchitectureWithOneLine) {
  const std::string cmd = std::string(ELUTQ_CLI_PATH) + " bench --synthetic gpt5 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string out;
  char buf[256];
  while (fgets(buf, sizeof buf, f)) out += buf;
  const int status = pclose(f);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("unknown --synthetic architecture 'gpt5'"), std::string::npos) << out;
}

}  // namespace
}  // namespace elutq
