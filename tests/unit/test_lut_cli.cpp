// `elutq bench` (tools/bench.cpp): bad arguments give one clear error line and a non-zero exit.
// (x86/host only: the ARM kernel test build has no CLI.)
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace elutq {
namespace {

TEST(LutBenchCli, RejectsUnknownArchitectureWithOneLine) {
  const test::CommandResult r = test::run_elutq("bench --synthetic gpt5");
  const std::string& out = r.out;
  EXPECT_NE(r.code, 0);
  EXPECT_NE(out.find("unknown --synthetic architecture 'gpt5'"), std::string::npos) << out;
}

}  // namespace
}  // namespace elutq
