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

TEST(LutBenchCli, RejectsUnknownTablePrecisionWithOneLine) {
  for (const char* args : {"bench --synthetic llama2-7b --lut-tables int4",
                           "perplexity -m x.gguf -f y.txt --lut-tables fp8",
                           "generate -m x.gguf -p hi --lut-tables 16"}) {
    const test::CommandResult r = test::run_elutq(args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.out.find("--lut-tables"), std::string::npos) << args << ": " << r.out;
    EXPECT_NE(r.out.find("int8,int12,int16"), std::string::npos) << args << ": " << r.out;
  }
}

}  // namespace
}  // namespace elutq
